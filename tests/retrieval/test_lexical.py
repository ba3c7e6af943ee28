"""BM25 sidecars on real segment files: analysis, build once, reload from disk, tombstones, global IDF, gc,
rebuild after an analyzer change."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval import lexical
from retrieval.index import Manifest, add_segment, add_tombstones, gc_segments, write_segment
from retrieval.lexical import LexicalCache, build_sidecar, idf, sidecar_path, tokenize


def _vecs(n: int, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _segment(cdir, texts: dict[int, str], m: Manifest) -> Manifest:
    ids = np.array(sorted(texts), dtype=np.int64)
    return add_segment(m, write_segment(cdir, ids, _vecs(ids.size)))


class Texts:
    """texts_for_ids over a dict, counting calls."""

    def __init__(self, texts: dict[int, str]):
        self.texts, self.calls = texts, 0

    def __call__(self, ids):
        self.calls += 1
        return [self.texts[int(i)] for i in ids]


def test_tokenize_mixed_chinese_and_english():
    toks = tokenize("How do I SORT lists? 我来到北京清华大学 lru_cache")
    words = ["来到", "北京", "清华", "华大", "大学", "清华大学"]  # jieba's search mode
    chars = ["北", "京", "清", "华", "大", "学"]  # of 来到, 北京, 清华大学: 来 and 到 are stopwords
    assert toks == ["sort", "list", *words, *chars, "lru", "cach"]
    assert tokenize("我来到北京清华大学", characters=False) == words
    assert tokenize("the of and") == []  # stopwords only


def test_tokenize_adds_the_words_of_camel_case_and_letter_digit_identifiers():
    # the words as before (an identifier whole, stemmed), then the words of the identifiers
    assert tokenize("Debug::pkgProblemResolver") == ["debug", "pkgproblemresolv", "pkg", "problem", "resolv"]
    assert tokenize("getUserName") == ["getusernam", "get", "user", "name"]
    assert tokenize("HTTPServerError") == ["httpservererror", "http", "server", "error"]
    assert tokenize("XMLHttpRequest") == ["xmlhttprequest", "xml", "http", "request"]
    assert tokenize("utf8Decode") == ["utf8decod", "utf", "8", "decod"]  # utf-8 is "utf", "8" too
    assert tokenize("macOS isValid") == ["maco", "isvalid", "mac", "os", "valid"]  # "is": a stopword
    # words that do not split: plain, Capitalized, acronyms (plural too), a one-letter prefix, snake_case
    plain = ["problem", "nasa", "url", "iphon", "ebay", "io", "x86", "k8s", "lru", "cach"]
    assert tokenize("Problem NASA URLs iPhone eBay iOS x86 k8s lru_cache") == plain


def test_tokenize_cuts_korean_into_overlapping_pairs():
    # a particle stuck to its word (은 / 이) leaves the word's pairs to match
    assert tokenize("회의실은 3층에 있습니다") == [
        "회의",
        "의실",
        "실은",
        "3",
        "층에",
        "있습",
        "습니",
        "니다",
    ]
    assert tokenize("회의실이 어디예요?") == ["회의", "의실", "실이", "어디", "디예", "예요"]
    assert tokenize("이 파일") == ["이", "파일"]  # a run of one syllable is itself


def test_tokenize_cuts_japanese_kana_into_overlapping_pairs_and_kanji_as_chinese():
    # kana runs in pairs, so パスワードは and パスワードを share パス, スワ, ワー, ード; kanji runs on jieba's path
    assert tokenize("パスワードは") == ["パス", "スワ", "ワー", "ード", "ドは"]
    assert tokenize("パスワードを変更する") == ["パス", "スワ", "ワー", "ード", "ドを", "変", "更", "する"]
    assert tokenize("chage の -l オプション") == ["chage", "の", "l", "オプ", "プシ", "ショ", "ョン"]
    # NFKC: half-width katakana made full-width
    assert tokenize("ｶﾀｶﾅ") == tokenize("カタカナ") == ["カタ", "タカ", "カナ"]
    assert tokenize("ユーザ・グループ") == [
        "ユー",
        "ーザ",
        "グル",
        "ルー",
        "ープ",
    ]  # the middle dot separates


def test_tokenize_folds_latin_diacritics_and_ligatures():
    assert tokenize("La réunion a lieu") == tokenize("la REUNION a lieu") == ["la", "reunion", "lieu"]
    assert tokenize("Größe der Datei ändern") == ["gross", "der", "datei", "andern"]
    assert tokenize("Grosse") == ["gross"]
    assert tokenize("Æsir Œuvre Ærø straße") == ["aesir", "oeuvr", "aero", "strass"]
    assert (
        tokenize("mémoire en mébioctets")
        == tokenize("memoire en mebioctets")
        == ["memoir", "en", "mebioctet"]
    )
    # other scripts are not folded (NFKD would take a Korean syllable or a Cyrillic й apart)
    assert tokenize("Привет й") == ["привет", "й"]


def test_tokenize_keeps_english_and_chinese_terms():
    # the terms of analyzer version 3, unchanged by the kana / hangul bigrams and the folding
    assert tokenize("The quick brown foxes jumped over lazy dogs") == [
        "quick",
        "brown",
        "fox",
        "jump",
        "lazi",
        "dog",
    ]
    assert tokenize("员工向公司借款，一月内还清。") == [
        "员工", "公司", "借款", "员", "工", "公", "司", "借", "款", "一月", "内", "还清", "月", "还", "清",
    ]  # fmt: skip


def test_query_words_find_an_identifier_through_the_sidecar(tmp_path):
    texts = Texts(
        {
            1: "You can see the contenders and their fight with `Debug::pkgProblemResolver`.",
            2: "apt-get install downloads and installs packages.",
            3: "dpkg configures the packages that were unpacked.",
        }
    )
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    assert [c for c, _ in cache.search(tmp_path, m, "problem resolver", 5, texts)] == [1]
    assert [c for c, _ in cache.search(tmp_path, m, "pkgProblemResolver", 5, texts)] == [1]


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("找公司借的钱什么时候要还？", 1),  # 借 / 的 / 钱 of the question; the chunk holds 借款 and 还清
        ("每天的站会几点开始？", 2),  # 站 / 会 of the question; the chunk holds 站会
    ],
)
def test_a_chinese_question_finds_the_chunk_that_holds_its_words_inside_longer_ones(
    tmp_path, question, answer
):
    texts = Texts(
        {
            1: "员工向公司借款，一月内还清。",
            2: "每天10点准时站会。",
            3: "公司的钱由财务统一管理。",
            4: "每天下班以前在钉钉上提交日报，几点提交都可以。",
            5: "公司的办公室在五楼。",
        }
    )
    m = _segment(tmp_path, texts.texts, Manifest())
    assert LexicalCache().search(tmp_path, m, question, 5, texts)[0][0] == answer


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        # パスワードの / アカウントを of the question; the chunks hold パスワードを / アカウントを but in other runs
        # of kana (ロックされた, ログイン時に): their pairs match
        ("次のログイン時にパスワードの変更を強制するには？", 1),
        ("ロックされたアカウントをまた使うにはどうすればいいですか？", 2),
        # 사용자의 / 프로세스를, 메시지가 / 출력되지 of the questions; the chunks hold 사용자가 / 프로세스만, 메시지도 /
        # 출력하지 (pairs of hangul)
        ("특정 사용자의 프로세스를 종료하려면?", 4),
        ("메시지가 출력되지 않게 하려면?", 6),
    ],
)
def test_a_japanese_or_korean_question_finds_the_chunk_in_other_words(tmp_path, question, answer):
    # excerpts of the Japanese passwd(1), chage(1) and the Korean killall(1) manual pages (shadow, psmisc)
    texts = Texts(
        {
            1: "そのユーザは次にログインする際にパスワードを変更するよう強制される。",
            2: "アカウントをロックされたユーザが再びそのシステムを使うには、システム管理者と連絡を取る必要がある。",
            3: "-i, --interactive 강제로 끝내기 전 대화식으로 확인합니다.",
            4: "-u, --user 지정 사용자가 소유한 프로세스만 강제로 끝냅니다.",
            5: "chage コマンドを使えるのは root ユーザのみに限られている。",
            6: "-q, --quiet 강제로 끝낸 프로세스가 없더라도 어떤 메시지도 출력하지 않습니다.",
        }
    )
    m = _segment(tmp_path, texts.texts, Manifest())
    assert LexicalCache().search(tmp_path, m, question, 5, texts)[0][0] == answer


def test_sidecar_of_an_older_analyzer_is_rebuilt_then_used(tmp_path, monkeypatch):
    texts = Texts({1: "Debug::pkgProblemResolver shows the fight", 2: "apt-get installs packages"})
    m = _segment(tmp_path, texts.texts, Manifest())
    seg = m.segments[0]
    with monkeypatch.context() as old:  # what a release before identifier parts wrote: no version in the name
        old.setattr(lexical, "ANALYZER_VERSION", 1, raising=False)
        old.setattr(lexical, "word_parts", lambda word: [], raising=False)
        build_sidecar(tmp_path, seg, texts)
    assert (tmp_path / f"{seg}.bm25" / "ids.npy").is_file()
    newer = sidecar_path(tmp_path, seg, lexical.ANALYZER_VERSION + 1)
    newer.mkdir()  # a newer release's, beside this one during an upgrade: not ours to remove

    cache = LexicalCache()  # the upgraded process
    assert [c for c, _ in cache.search(tmp_path, m, "problem resolver", 5, texts)] == [1]
    assert (cache.builds, texts.calls) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [seg, sidecar_path(tmp_path, seg).name, newer.name]
    )
    meta = json.loads((sidecar_path(tmp_path, seg) / "meta.json").read_text())
    assert meta["analyzer"] == lexical.ANALYZER_VERSION

    def no_texts(ids):
        raise AssertionError("the rebuilt sidecar is read from disk")

    fresh = LexicalCache()
    assert [c for c, _ in fresh.search(tmp_path, m, "problem resolver", 5, no_texts)] == [1]
    assert fresh.builds == 0


def test_sidecar_built_once_then_loaded_from_disk(tmp_path):
    texts = Texts({1: "faiss vector search", 2: "bm25 keyword search", 3: "jieba 中文分词"})
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    assert cache.search(tmp_path, m, "keyword", 5, texts)[0][0] == 2
    assert cache.search(tmp_path, m, "中文分词", 5, texts)[0][0] == 3
    assert (cache.builds, texts.calls) == (1, 1)
    assert (sidecar_path(tmp_path, m.segments[0]) / "ids.npy").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    def no_texts(ids):
        raise AssertionError("a second process must read the sidecar, not the database")

    fresh = LexicalCache()  # another process
    assert fresh.search(tmp_path, m, "vector", 5, no_texts)[0][0] == 1
    assert fresh.builds == 0


def test_tombstoned_chunks_are_never_returned(tmp_path):
    texts = Texts({1: "apple pie recipe", 2: "apple tart recipe", 3: "pear"})
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    assert [c for c, _ in cache.search(tmp_path, m, "apple", 5, texts)] in ([1, 2], [2, 1])
    assert [c for c, _ in cache.search(tmp_path, add_tombstones(m, [1]), "apple", 5, texts)] == [2]


def test_scores_use_collection_wide_idf_across_segments(tmp_path):
    # The same text in a one-document segment and in a ten-document one: with per-segment IDF the
    # lonely copy would score 0.29 against 1.99; on the collection's IDF both score the same.
    small = {1: "alpha gamma"}
    big = {10: "alpha gamma", **{i: "delta epsilon" for i in range(11, 20)}}
    m = _segment(tmp_path, small, Manifest())
    m = _segment(tmp_path, big, m)
    texts = Texts({**small, **big})
    got = dict(LexicalCache().search(tmp_path, m, "alpha", 5, texts))
    assert set(got) == {1, 10}
    assert got[1] == pytest.approx(got[10], rel=1e-6)
    # = Lucene BM25 with df=2 in 11 documents, tf=1, dl=avgdl: idf * tf / (tf + k1), k1=1.5
    assert got[1] == pytest.approx(float(idf(2, 11)) / 2.5, rel=1e-5)


def test_gc_removes_sidecar_with_its_segment(tmp_path):
    texts = Texts({1: "one", 2: "two"})
    m1 = _segment(tmp_path, {1: "one"}, Manifest())
    m2 = _segment(tmp_path, {2: "two"}, m1)
    LexicalCache().warm(tmp_path, m2, texts)
    first, second = m2.segments
    assert gc_segments(tmp_path, Manifest(version=9, segments=[second])) == 2
    assert not sidecar_path(tmp_path, first).exists() and not (tmp_path / first).exists()
    assert sidecar_path(tmp_path, second).is_dir()


def test_gc_removes_the_sidecars_of_every_analyzer_version(tmp_path, monkeypatch):
    texts = Texts({1: "one", 2: "two"})
    m1 = _segment(tmp_path, {1: "one"}, Manifest())
    m2 = _segment(tmp_path, {2: "two"}, m1)
    LexicalCache().warm(tmp_path, m2, texts)
    first, second = m2.segments
    monkeypatch.setattr(lexical, "ANALYZER_VERSION", 1, raising=False)
    build_sidecar(tmp_path, first, texts)  # left by an older release (a build removes only older ones)
    monkeypatch.undo()
    assert sidecar_path(tmp_path, first, 1).is_dir() and sidecar_path(tmp_path, first).is_dir()
    assert gc_segments(tmp_path, Manifest(version=9, segments=[second])) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second, sidecar_path(tmp_path, second).name])


def test_concurrent_first_searches_build_the_sidecar_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    texts = Texts({i: f"chunk number {i} about topic{i % 3}" for i in range(1, 41)})
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cache.search(tmp_path, m, "topic1", 3, texts), range(8)))
    assert cache.builds == 1 and texts.calls == 1
    assert all(r == results[0] for r in results) and len(results[0]) == 3


def test_failed_build_leaves_nothing_behind(tmp_path):
    m = _segment(tmp_path, {1: "a", 2: "b"}, Manifest())
    with pytest.raises(ValueError, match="returned 1 texts for 2 ids"):
        LexicalCache().search(tmp_path, m, "word", 3, lambda ids: ["only one"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [m.segments[0]]


def test_a_writer_writes_the_sidecar_a_reader_would_build(tmp_path):
    # A writer indexes the texts it holds before its segment is listed; a reader then loads it, builds nothing.
    texts = Texts({7: "apple pie recipe", 3: "pear tart", 5: "apple crumble"})
    ids = np.array([7, 3, 5], dtype=np.int64)  # the segment's row order
    m = add_segment(Manifest(), write_segment(tmp_path, ids, _vecs(3)))
    lexical.write_sidecar(tmp_path, m.segments[0], ids, lexical.index_texts(texts(ids.tolist())))
    reader = LexicalCache()
    assert [c for c, _ in reader.search(tmp_path, m, "apple", 5, texts)] in ([7, 5], [5, 7])
    assert reader.builds == 0 and texts.calls == 1  # the writer's call only
    built = tmp_path / "built"
    built.mkdir()
    (built / m.segments[0]).write_bytes((tmp_path / m.segments[0]).read_bytes())
    rebuilt = LexicalCache()
    assert rebuilt.search(built, m, "apple pie", 5, texts) == reader.search(
        tmp_path, m, "apple pie", 5, texts
    )
    assert rebuilt.builds == 1
    with pytest.raises(ValueError, match="the BM25 index has 2 rows for 3 ids"):
        lexical.write_sidecar(built, "seg-x.faiss", ids, lexical.index_texts(["a b", "c"]))
    assert not list(built.glob("*seg-x*"))


def test_cjk_share_counts_chinese_characters_and_other_words():
    from retrieval.lexical import cjk_share

    assert cjk_share("公司每个月给几天带薪假？") == 1.0
    assert cjk_share("How many vacation days do I get?") == 0.0
    assert cjk_share("提交 Pull Request 之后") == pytest.approx(4 / 6)
    assert cjk_share("？！ ...") == 0.0
    # Japanese kana and Korean hangul: an English-only embedding is no better on them
    assert cjk_share("パスワードを変更するには？") == 1.0
    assert cjk_share("회의실은 어디에 있나요?") == 1.0
    assert cjk_share("passwd の -l オプション") == pytest.approx(6 / 8)
    assert cjk_share("La réunion a lieu") == 0.0


def test_a_who_question_finds_the_agent_noun_and_the_verb(tmp_path):
    # "owns" is "own" and "Owner" stays "owner" under Snowball: "Who owns ...?" matched only the service's
    # name, and the chunk that says who owns it ranked under one that only speaks of the service
    texts = Texts(
        {
            1: "Billing service\nThe billing service sends invoices. Billing service runs nightly billing.",
            2: "Billing service contacts\nOwner: Dana Reyes",
            3: "Search service\nMaintainer: Sam Ito. Sam Ito owns the search index.",
        }
    )
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    assert cache.search(tmp_path, m, "Who owns the billing service?", 5, texts)[0][0] == 2
    assert cache.search(tmp_path, m, "Who is the owner of the search index?", 5, texts)[0][0] == 3
    # other questions keep their own terms: "use" does not look for "user"
    assert lexical.query_terms("Who owns the billing service?") == [
        "own", "bill", "servic", "owner", "ownor", "biller", "billor", "servicer", "servicor"
    ]  # fmt: skip
    assert lexical.query_terms("How do I use the billing service?") == ["use", "bill", "servic"]
    # a "whose" inside the question asks for no one (a python docs question found csv's writer pages)
    question = "How do I write a generic function whose return type depends on its argument type?"
    assert lexical.query_terms(question) == tokenize(question)
    assert lexical.asks_who("To whom are bug reports sent?") and lexical.asks_who("Which team owns billing?")
    assert lexical.agent_forms("writer") == ("writ", "write") and lexical.agent_forms("us") == ()


def test_doc_freqs_count_the_chunks_of_every_segment_of_every_collection(tmp_path):
    # The statistics of search's IDF, for the extractive answerer's weighting of a question's terms: a term
    # in every chunk is common, one in no chunk the rarest; a tombstoned chunk counts until compaction.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    texts = Texts({1: "leave policy", 2: "travel policy", 3: "parking policy", 4: "leave carry-over"})
    ma = _segment(a, {1: texts.texts[1], 2: texts.texts[2]}, Manifest())
    ma = add_tombstones(_segment(a, {3: texts.texts[3]}, ma), [3])
    mb = _segment(b, {4: texts.texts[4]}, Manifest())
    cache = LexicalCache()
    df, n = cache.doc_freqs([(a, ma), (b, mb)], ["polici", "leav", "park", "vest"], texts)
    assert (df, n) == ({"polici": 3, "leav": 2, "park": 1, "vest": 0}, 4)
    assert cache.doc_freqs([(b, mb)], ["polici", "leav"], texts) == ({"polici": 0, "leav": 1}, 1)


def test_doc_freqs_without_building_wait_for_no_sidecar(tmp_path):
    # The extractive answerer asks after retrieval: a sidecar that a search gave up on is still being built,
    # and the answer does not wait for it (no statistics: the unweighted floors decide).
    texts = Texts({1: "leave policy", 2: "travel policy"})
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()
    assert cache.doc_freqs([(tmp_path, m)], ["polici"], texts, build=False) == ({}, 0)
    assert texts.calls == 0
    cache.search(tmp_path, m, "leave", 5, texts)  # builds it
    assert cache.doc_freqs([(tmp_path, m)], ["polici"], texts, build=False) == ({"polici": 2}, 2)
    # another process finds it on disk
    assert LexicalCache().doc_freqs([(tmp_path, m)], ["leav"], texts, build=False) == ({"leav": 1}, 2)
    assert texts.calls == 1


def test_german_words_spelled_without_umlauts_find_the_page_with_them_and_back(tmp_path):
    """A question's "Groesse" (typed without umlauts) finds the page's "Größe", and "Größe" a page's "Groesse"; an English
    question gets no such forms (its "guest", "blue" and "does" stay as they are)."""
    texts = Texts(
        {
            1: "Die maximale Größe einer Datei beträgt zehn Megabyte.",
            2: "Eine Datei kann man umbenennen, wenn sie nicht geöffnet ist.",
            3: "Das Buero im dritten Stock ist montags geschlossen.",
            4: "Die Kantine im Erdgeschoss hat montags geschlossen.",
        }
    )
    m = _segment(tmp_path, texts.texts, Manifest())
    cache = LexicalCache()

    def top(q: str) -> int:
        return cache.search(tmp_path, m, q, 4, texts)[0][0]

    assert top("Welche Groesse darf eine Datei haben?") == 1
    assert top("Ist das Büro montags geschlossen?") == 3
    assert lexical.query_terms("Welche Groesse darf eine Datei haben?")[-1] == "gross"
    assert lexical.query_terms("Wann öffnet das Büro?")[-2:] == ["oeffnet", "buero"]
    q = "Where is the guest Wi-Fi password? Does it expire when the blue light goes off?"
    assert lexical.query_terms(q) == tokenize(q)
    assert lexical.german_spellings("Wie teuer ist die neue Quelle?") == []  # ue after a vowel, after q
    assert lexical.spelled_otherwise("Welche Groesse hat das Büro?") == {
        "groess": frozenset({"gross"}),
        "buro": frozenset({"buero"}),
    }
