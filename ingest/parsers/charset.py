"""Which legacy encoding a text file without a BOM or a declared charset is in (it is not UTF-8).

Every candidate decoding of a sample is scored by how plausible its text is, in bits, roughly -log2 of its
probability (``_score``): letters by the letter and letter-pair frequencies of the best-fitting language of
their script (``_LANGS``, ``_BIGRAMS``), Chinese and Japanese characters by tiers of how common they are (a
hundred or two of the commonest, then the levels of GB2312, Big5 and JIS X 0208, which put common characters
first), Korean syllables by their letters (jamo), everything else by its kind (C1 control characters, box
drawing and private-use characters cost most), and words by their shape (``mIXED`` case or scripts inside one
word, final letter forms inside one, symbols glued to letters).
Bits are comparable across decodings of the same bytes, so the cheapest text wins; ``_CANDIDATES``' small
priors break ties toward the common code page (German text reads the same in Windows-1252 and Windows-1250).
"""

from __future__ import annotations

import codecs
import collections
import functools
import math
import os
import re
import unicodedata
from dataclasses import dataclass

# (codec, prior bits, what to call it in a notice). Order matters only for exact ties.
_CANDIDATES = (
    ("cp1252", 0.0, "Windows-1252 (Western European)"),
    ("cp1250", 0.5, "Windows-1250 (Central European)"),
    ("iso8859_2", 1.0, "ISO-8859-2 (Central European)"),
    ("iso8859_15", 1.0, "ISO-8859-15 (Western European)"),
    ("latin_1", 1.5, "ISO-8859-1 (Western European)"),
    ("cp1254", 1.0, "Windows-1254 (Turkish)"),
    ("cp1257", 1.5, "Windows-1257 (Baltic)"),
    ("iso8859_13", 2.0, "ISO-8859-13 (Baltic)"),
    ("cp1251", 0.0, "Windows-1251 (Cyrillic)"),
    ("koi8_r", 0.5, "KOI8-R (Cyrillic)"),
    ("koi8_u", 1.0, "KOI8-U (Cyrillic)"),
    ("iso8859_5", 1.5, "ISO-8859-5 (Cyrillic)"),
    ("cp866", 1.5, "CP866 (DOS Cyrillic)"),
    ("cp1253", 0.0, "Windows-1253 (Greek)"),
    ("iso8859_7", 0.5, "ISO-8859-7 (Greek)"),
    ("cp1255", 0.0, "Windows-1255 (Hebrew)"),
    ("iso8859_8", 0.5, "ISO-8859-8 (Hebrew)"),
    ("cp1256", 1.5, "Windows-1256 (Arabic)"),
    ("cp874", 1.0, "Windows-874 (Thai)"),
    ("cp850", 2.0, "CP850 (DOS Western European)"),
    ("gb18030", 0.0, "GB18030 (Chinese)"),
    ("cp950", 0.5, "Big5 (Chinese)"),
    ("cp932", 0.0, "Shift_JIS (Japanese)"),
    ("euc_jp", 0.5, "EUC-JP (Japanese)"),
    ("cp949", 0.5, "EUC-KR (Korean)"),
)
_WIDE = (("utf_16_le", 0.0, "UTF-16"), ("utf_16_be", 0.0, "UTF-16"))
# Chinese and Korean code pages hold kana too, but their files seldom do: kana in them is what Big5, GBK or
# EUC-KR make of other bytes ("莉こ歎跡桶" for GBK's "产品价格表"). Not the middle dot, which Chinese names use.
_NOT_JAPANESE = frozenset({"gb18030", "cp950", "cp949"})
_KANA = re.compile(r"[\u3041-\u30fa\u30fc-\u30ff]")
_FOREIGN_KANA_BITS = 8.0
SAMPLE_BYTES = 16_384  # of lines that hold bytes past ASCII: enough to tell, fast on a large file
# A win by fewer bits than this over a decoding that reads differently is a guess (``Detection.confident``),
# where the two differ in at least GUESS_CHARS characters (one odd "–", "°" or "₪" is no reason for a notice).
CONFIDENT_BITS = 6.0
GUESS_CHARS = 3

# Letters of each language, commonest first, lowercase (a letter's probability falls by about _RATIO a rank).
_LANGS = {
    "en": ("LATIN", "etaoinshrdlcumwfgypbvkjxqz"),
    "fr": ("LATIN", "esaitnrulodcmpévqfbghjàxèyêzçôùâûîœwkëïü"),
    "de": ("LATIN", "enisratdhulcgmobwfkzvüpäßjöyqxé"),
    "es": ("LATIN", "eaosrnidlctumpbgvyqóhfzjéíñáúxwküà"),
    "it": ("LATIN", "eaionlrtscdupmvghfbqzàèùòìéóykwxj"),
    "pt": ("LATIN", "aeosrindmutclpvghqbfãzçjêéáxóíõúâàkwyü"),
    "ca": ("LATIN", "eastinrlocudmpgvàbéqfèhòóíjxçzyïúüwk"),
    "nl": ("LATIN", "enatirodslghvkmubpwjczfxyëéöq"),
    "sv": ("LATIN", "eantrslidomkgväfhupåöbcyjxwzéq"),
    "da": ("LATIN", "erntisdlagokmvfubpæhøjåycwzxqé"),
    "fi": ("LATIN", "aintesloukämrvjhpydögbfcwzqxå"),
    "pl": ("LATIN", "aioeznrwsctkydpmlujłbgęhąóżśćfńźxvq"),
    "cs": ("LATIN", "oeanitvsrlkdupmcíhzáyjbřěéčšžůúfgňďťxwq"),
    "sk": ("LATIN", "oaeinrtsvlkdmpuzjhcyábíéčýžšúfgľôäňťďŕĺxwq"),
    "hu": ("LATIN", "eatlnskoizrmgádyévbhjöfpőuócíüúűxwq"),
    "ro": ("LATIN", "eiartnulcosăpdmîfvșşbțţgzâhjxkyw"),
    "hr": ("LATIN", "aioenjsrtvlkdumpzgbčšhcžćfđyxwq"),
    "sl": ("LATIN", "eaoinrljstvkdpmzubgčšhcžfyxwq"),
    "tr": ("LATIN", "aeinrlıdkmyustobüşzgçhğvcöpfjwâîû"),
    "lt": ("LATIN", "iasetunkrolmpvdjgėbyšųžcčąįūęzhf"),
    "lv": ("LATIN", "aiseturnlkmpādjvīozēgbcšņūļķžčģhf"),
    "et": ("LATIN", "aeistlunkomdrvgphjäõbüöfšzž"),
    "ru": ("CYRILLIC", "оеаинтсрвлкмдпуяызбгьчйхжшюцщэфъё"),
    "uk": ("CYRILLIC", "оанвіитерсклудмпзяьгбчхжцшйюєїщфґ"),
    "bg": ("CYRILLIC", "аоиетнврслкдпмзгяъбучжйхцшщюьф"),
    "sr": ("CYRILLIC", "аиоенјрсткувдлмпзгбчшхцћжљњфђџ"),
    "el": ("GREEK", "αοιετνσρηπκυμλςόίάέωδγήύχθώφβξζψ"),
    "he": ("HEBREW", "יוהמלארבנתשעכםדחקפןסזגצטךףץ"),
    "ar": ("ARABIC", "اليمونرتبعهةدفكسقحجىأشطإصخثزضغذظئآؤء"),
    "th": ("THAI", "านรอกเงมยลวดทสตะคบปหิีัพ่้ขจใไแโำชศถซผฝฟภธญฐฉณฮ็ืุู๊๋์ฆฑฒฬฤ"),
}
_RATIO = 0.87
# Common letter pairs of each language (each found in a word takes _BIGRAM_BITS off): what tells Hungarian
# "fővárosa" from Portuguese-looking "fõvárosa" when both fit their letters alike.
_BIGRAMS = {
    "en": "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic ne ea",
    "fr": "es le de en re nt on er te el an se et la ai it me ou em ie ur qu ti ué ée té ré és ès èr ço ôt êt eu ch ne ss",
    "de": "en er ch de ei te in nd ie ge st ne be es un re an he au ng di ic ru ße üb ür äu ät öf ög ös ck sc ht ze",
    "es": "de en es el la os ue ar ra re er as on st ad al nt co ta se ci ón ía ió ño ña ás ér ué qu do to an ca or te",
    "it": "er re on di ti no ra to la en na te co ar an ri in al or ta at zi io ni ch ll pe de ss tt ne ma le se",
    "pt": "de os es ra do as ar en te co nt re er ad ta da or qu ão çã õe ém ia ma se ês ár ér íc ue an ca to",
    "ca": "es de en la el er an re nt ra ar at ta al és ió ià ll qu ue ci co na or te se ne ol",
    "nl": "en de er an ee te in ge et aa he ij el st nd or ie oo ar ve re be ng ch ui on is le at",
    "sv": "en er de et an ar in st ti te la ng ör är nd om på ll av sk re ra ma gö ån äl ög ät kt",
    "da": "er en de et re te nd ge in st le ne se ng ke og ed af fo ig ri ra ær",
    "fi": "en in is ta an it si tä ll ää ai st ka ss se ja ks ki oi ne at no uu yö ön äi sä kä tt",
    "pl": "ie ni ow rz cz sz ch na po an dz ra ze st ki wa zi ia ne je ię ść ży ać ał ło ół dź ją że",
    "cs": "st ne po pr ro ní na ov je en ho te ko to ra ch la ti le ře ší čn ží ká vá ný",
    "sk": "ne na po pr ro st ov je ho ko ni to ra ch la ti le va ie ôž ča ši že ný ká",
    "hu": "el en sz eg gy et ak ek er és te az al ta ol ny le ne me ar at ko ra ve tt ba be an ag ők ől ön ös ár ás ág ér ét fő ős ól",
    "ro": "re in de ar ea ul at te ri le ne ta ră tă că să ăm ăr şi ţi şt ţa în an al nt",
    "hr": "je na ij ra ko st pr no ni ti ja ov an ne da en li ma ka ić če ši ču ža đe ve",
    "sl": "je na ra ko st pr ti ni no ov an ne da en li ma ka ve če ši ža lj nj",
    "tr": "ar la le in er an en de ir ın ır ıl ğı şı ya ak ek da ri ne",
    "lt": "as is ai ir ka ta ar in us ri ti an ja ra ie uo ių ės šk ši ži ėj yr ąj ūr ęs",
    "lv": "as ie is ar ai ir an ka ta ra ju ti un la st āj ām ās īb ēt šā ņa ļa ķe ēj",
    "et": "as ma ta st al la le is en ka ja ud te se ne ta ks äi õi ää üh ül õp",
    "ru": "ст но то на ен ов ни ра во ко ал ре пр ли ет по ро ер ол ан ор те ос ны ка ть од ел ва де ле ом",
    "uk": "на ти но ст пр ні ра ен ро ко то ан ва ів ий ає ої ії ьк ви ав",
    "bg": "на то ст пр ни те ра но ет ре ен ва ко за та от ът ъл да ия",
    "sr": "је на ст ра ко ни пр но ти ја ов не да ен ли ма ка ић",
    "el": "το αι ου ης ει ια τη κα ον ερ ντ απ αν ισ ος ικ πο ρα ετ να στ με πα ρο σε νο ση τα",
}
_BIGRAM_BITS = 1.5
# Bits for a language fewer files are written in: a short text that fits two languages equally well (Portuguese
# "região" and Romanian-looking "regiăo") is read as the more common one.
_LESS_COMMON = {
    "ca": 1.5,
    "ro": 1.5,
    "hr": 1.5,
    "sl": 1.5,
    "sk": 1.5,
    "hu": 1.0,
    "cs": 1.0,
    "fi": 1.0,
    "da": 1.0,
    "lt": 1.5,
    "lv": 1.5,
    "et": 1.5,
}
_UNLISTED_BITS = 14.0  # a letter of the language's script that the language does not use
_RARE_SCRIPT_BITS = 18.0  # a letter of a script no language here writes in (Armenian, Yi, ...)
_SCRIPT_BITS = 10.0  # each script past the first in one text

# The commonest characters of running text (written for this module, not copied from a frequency list).
_ZH_HANS = set(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用"
    "道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日"
    "员工请假申提交需每享带薪期间公司管理部门时间工作项目问题情况进行要求规定通知文件内容资料信息系统服务"
)
_ZH_HANT = set(
    "的一是不了在人有我他這個們中來上大為和國地到以說時要就出會可也你對生能而子那得於著下自之年過發後作裡用"
    "道行所然家種事成方多經麼去法學如都同現當沒動面起看定天分還進好小部其些主樣理心她本前開但因只從想實日"
    "員工請假申提交需每享帶薪期間公司管理部門時間工作項目問題情況進行要求規定通知文件內容資料資訊系統服務"
)
_JA_KANJI = set(
    "日一人年大十二本中長出三時行見月後前生五間上東四今金九入学高円子外八六下来気小七山話女北午百書先名川千"
    "水半男西電校語土木聞食車何南万毎白天母火右読友左休父雨社会事業者的分自新員手発国場合同現実内部方法理"
    "取得申請提出必要休暇有給上司期間以内当議"
)
_KO = set(
    "이다는의에하가고을를지기로서한사대도자시리어인수나게일보정있것들으과아니요해적제내주면전부원여소그만"
    "상우라하합니까또장성관회동세무문신화간경위마음저말중때년습까지람방물결실체공출연금교구개발명분"
    "름휴신청서의열립금요일준비주세료김민"
)


@dataclass(frozen=True)
class Detection:
    """The encoding chosen for a sample, and whether it won clearly (else a notice may say it was a guess)."""

    encoding: str
    label: str
    confident: bool


def detect(data: bytes) -> Detection:
    """The likeliest encoding of ``data`` (not UTF-8, no BOM) among ``_CANDIDATES``, and UTF-16 without a BOM where
    the sample's length allows (short CJK text in UTF-16 need have no NUL byte). Binary data gets one too: the
    caller counts its control characters."""
    sample, cut = _sample(data)
    candidates = list(_CANDIDATES)
    if len(sample) % 2 == 0 or cut or b"\x00" in sample:
        candidates = list(_WIDE) + candidates
    scored: list[tuple[float, str, str, str]] = []  # (bits, text, codec, label)
    for codec, prior, label in candidates:
        chunk = sample[: len(sample) & ~1] if codec.startswith("utf_16") else sample
        text = codecs.getincrementaldecoder(codec)(errors="replace").decode(chunk, final=not cut)
        bits = _score(text) + prior
        if codec in _NOT_JAPANESE:
            bits += _FOREIGN_KANA_BITS * len(_KANA.findall(text))
        scored.append((bits, text, codec, label))
    scored.sort(key=lambda s: s[0])
    bits, text, codec, label = scored[0]
    rival = next((s for s in scored[1:] if s[1] != text), None)
    confident = rival is None or rival[0] - bits >= CONFIDENT_BITS or _differ(text, rival[1]) < GUESS_CHARS
    return Detection(codec, label, confident)


# a line with a multi-byte UTF-8 character (two bytes are enough to tell)
_UTF8_LINE = re.compile(rb"(?:^|\n)[^\n]*[\xc2-\xf4][\x80-\xbf]")


def _differ(a: str, b: str) -> int:
    """How many characters two readings of the same bytes differ in: position by position where they are as long,
    else between their common start and end ("25°C." and Big5's "25蚓.": 2)."""
    if len(a) == len(b):
        return sum(1 for x, y in zip(a, b, strict=True) if x != y)
    start = len(os.path.commonprefix([a, b]))
    end = len(os.path.commonprefix([a[start:][::-1], b[start:][::-1]]))
    return max(len(a), len(b)) - start - end


def _sample(data: bytes) -> tuple[bytes, bool]:
    """Up to SAMPLE_BYTES of the lines of ``data`` that hold bytes past ASCII and are not UTF-8 (a file of many
    hands mixes the two, ``text._decode_mixed``; all of a small file without such lines), and whether the
    sample may end inside a character. Where NUL bytes say UTF-16, the start of the file."""
    if len(data) <= SAMPLE_BYTES and not _UTF8_LINE.search(data):
        return data, False
    if b"\x00" in data[:4096]:
        return data[:SAMPLE_BYTES], True
    lines, size = [], 0
    for m in re.finditer(rb"[^\n]*[\x80-\xff][^\n]*\n?", data):
        if not _utf8(m.group(0)):
            lines.append(m.group(0))
            size += len(lines[-1])
            if size >= SAMPLE_BYTES:
                break
    return (b"".join(lines)[:SAMPLE_BYTES], True) if lines else (data[:SAMPLE_BYTES], True)


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- characters ---------------------------------------------------------------------------------------------
_CJK = frozenset(
    {
        "CJK",
        "HIRAGANA",
        "KATAKANA",
        "KATAKANA-HIRAGANA",
        "HANGUL",
        "HALFWIDTH",
        "FULLWIDTH",
        "BOPOMOFO",
        "IDEOGRAPHIC",
    }
)
_COMMON_PUNCT = set("–—‘’‚“”„«»…•°€£¥©®™§·¿¡\u00a0₪№")
_CJK_PUNCT = set("、。「」『』，．・：；！？（）【】《》〈〉“”…　～")


@functools.lru_cache(maxsize=8192)
def _kind(c: str) -> tuple[str, str]:
    """(kind, script): ("letter"|"mark", "LATIN"...), ("cjk", ""), ("space"|"ascii"|"punct"|"symbol"|"box"|"junk", "")."""
    if c.isascii():
        if c.isalpha():
            return "letter", "LATIN"
        if c in " \t\n\r\f":
            return "space", ""
        return ("ascii", "") if c.isprintable() or c == "\x1b" else ("junk", "")
    cat = unicodedata.category(c)
    name = unicodedata.name(c, "")
    script = name.split(" ", 1)[0]
    if cat in ("Cc", "Co", "Cs", "Cn") or c == "\ufffd":
        return "junk", ""
    if script in _CJK or "\u3000" <= c <= "\u303f":
        return "cjk", ""
    if c in "ªºµ":  # letters to Unicode, symbols in text (and what Greek and Cyrillic bytes become)
        return "symbol", ""
    if cat == "Nd":  # a digit of another script (Thai, Arabic-Indic): what a wrong code page makes of letters
        return "symbol", ""
    if cat == "Mn" and script in ("HEBREW", "ARABIC"):  # vowel points: a pointed text has one a letter
        return "mark", script
    if cat.startswith("L") or (cat == "Mn" and script == "THAI"):  # Thai's vowels and tone marks are letters
        return "letter", script
    if c in _COMMON_PUNCT:
        return "punct", ""
    if "\u2500" <= c <= "\u259f":  # box drawing, block elements: DOS code pages' graphics
        return "box", ""
    if cat == "Zs":
        return "space", ""
    return "symbol", ""


_KIND_BITS = {
    "mark": 5.0,
    "space": 2.0,
    "ascii": 5.0,
    "punct": 8.0,
    "symbol": 13.0,
    "box": 16.0,
    "junk": 24.0,
}


@functools.lru_cache(maxsize=64)
def _letter_bits(lang: str) -> dict[str, float]:
    letters = _LANGS[lang][1]
    ratio = max(_RATIO, 1 - 3.5 / len(letters))  # a longer alphabet (Thai's) falls off slower
    weights = [ratio**r for r in range(len(letters))]
    total = sum(weights) / 0.995  # what is left is the unlisted letters'
    return {c: -math.log2(w / total) for c, w in zip(letters, weights, strict=True)}


# Korean syllables' initial consonants, vowels and final consonants by their Unicode index, commonest first
_KO_INITIAL = (11, 0, 9, 3, 12, 2, 18, 5, 6, 7, 14, 17, 16, 15, 1, 10, 4, 13, 8)
_KO_VOWEL = (0, 20, 18, 4, 8, 13, 6, 1, 5, 19, 9, 12, 17, 14, 2, 11, 16, 10, 15, 3, 7)
_KO_FINAL = (
    4,
    8,
    21,
    1,
    16,
    17,
    20,
    19,
    7,
    27,
    22,
    23,
    25,
    2,
    26,
    10,
    9,
    11,
    6,
    5,
    18,
    15,
    3,
    12,
    13,
    14,
    24,
)


def _ranked_bits(order: tuple[int, ...], ratio: float) -> dict[int, float]:
    total = sum(ratio**r for r in range(len(order)))
    return {i: -math.log2(ratio**r / total) for r, i in enumerate(order)}


_KO_BITS = (_ranked_bits(_KO_INITIAL, 0.8), _ranked_bits(_KO_VOWEL, 0.8), _ranked_bits(_KO_FINAL, 0.8))


def _jamo_bits(c: str) -> float:
    """Bits of a Hangul syllable as its initial, vowel and final (none: one bit, half of all syllables)."""
    n = ord(c) - 0xAC00
    initial, vowel, final = n // 588, n % 588 // 28, n % 28
    bits = _KO_BITS[0][initial] + _KO_BITS[1][vowel]
    return bits + (1.0 if final == 0 else 1.0 + _KO_BITS[2][final])


@functools.lru_cache(maxsize=64)
def _bigrams(lang: str) -> frozenset[str]:
    return frozenset(p for p in _BIGRAMS.get(lang, "").split() if len(p) == 2)


def _code(c: str, codec: str) -> int:
    try:
        b = c.encode(codec)
    except UnicodeEncodeError:
        return 0
    return int.from_bytes(b, "big") if len(b) == 2 else 0


@functools.lru_cache(maxsize=16384)
def _cjk_bits(c: str) -> tuple[float, float, float, float]:
    """Bits of one CJK character as (simplified Chinese, traditional Chinese, Japanese, Korean) text."""
    name = unicodedata.name(c, "")
    if name.startswith("HALFWIDTH KATAKANA"):
        return 20.0, 20.0, 12.0, 20.0
    if name.startswith(("HIRAGANA", "KATAKANA")) or c == "ー":
        kana = 4.5 if name.startswith("HIRAGANA") else 6.5
        return 16.0, 16.0, kana, 16.0
    if name.startswith("HANGUL SYLLABLE"):
        ko = min(6.0, _jamo_bits(c)) if c in _KO else _jamo_bits(c) + (0.0 if _code(c, "euc_kr") else 5.0)
        return 18.0, 18.0, 18.0, ko
    if name.startswith("CJK UNIFIED") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
        gb, big5, jis = _code(c, "gb2312"), _code(c, "big5"), _code(c, "euc_jp")
        hans = 7.5 if c in _ZH_HANS else 12.0 if 0xB0A1 <= gb < 0xD800 else 15.5 if gb else 19.0
        hant = 7.5 if c in _ZH_HANT else 11.5 if 0xA440 <= big5 < 0xC67F else 15.0 if big5 else 19.0
        ja = 8.5 if c in _JA_KANJI else 12.0 if 0xB0A1 <= jis < 0xD000 else 15.5 if jis else 19.0
        ko = 17.0 if _code(c, "euc_kr") else 19.0  # hanja: rare in Korean text now
        return hans, hant, ja, ko
    if name.startswith("BOPOMOFO"):
        return 16.0, 12.0, 18.0, 18.0
    if c in _CJK_PUNCT:
        return 5.5, 5.5, 5.5, 6.0
    if name.startswith(("FULLWIDTH", "HALFWIDTH")):
        return 9.0, 9.0, 9.0, 9.0
    return 16.0, 16.0, 16.0, 16.0  # a CJK radical, stroke, compatibility form: rare in text


# --- words ----------------------------------------------------------------------------------------------------
# letters, and the combining marks of Hebrew, Arabic and Thai (vowels, tone marks), which \w leaves out
_MARKS = "\u0591-\u05c7\u064b-\u065f\u0670\u0e31\u0e34-\u0e3a\u0e47-\u0e4e"
_LETTERS = re.compile(rf"(?:[^\W\d_]|[{_MARKS}])+")
_ALPHABETIC = frozenset(s for s, _ in _LANGS.values())
_VOWELLED = frozenset({"LATIN", "CYRILLIC", "GREEK"})
_VOWELS = frozenset("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœąęıőűůěаеёиоуыэюяіїєαεηιουωάέήίόύώϊϋΐΰ")
# a symbol that a word starts with ("®ivjo" for "Živjo"): quotes, brackets and ¿¡ are fine
_LEADING = re.compile(rf"(?<![^\W\d_])[^\w\s{_MARKS}'’\"“„‚«‹¿¡(\[{{\-–—/.,:;!?&+*#@%…$€£¥]+(?=[^\W\d_])")
# a combining mark on no letter ("ٌض" for "ёж" in ISO-8859-5 read as Windows-1256)
_LONE_MARK = re.compile(rf"(?<![^\W\d_]|[{_MARKS}])[{_MARKS}]")
_FINAL_INSIDE = re.compile(r"[ςךםןףץ](?=\w)")
# a Chinese, Japanese or Korean character next to a Latin letter: few in real text, every other one in Latin
# text read as a CJK code page ("m《sen")
_CJK_LATIN = re.compile(
    r"[A-Za-z](?=[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uff00-\uffef])|(?<=[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uff00-\uffef])[A-Za-z]"
)
_GLUED = re.compile(rf"(?<=[^\W\d_])(?:[^\w\s{_MARKS}'’\-.,:;/&+·@#%*()\"!?]|[^\x00-\x7f\D])+(?=[^\W\d_])")


@functools.lru_cache(maxsize=16384)
def _word_bits(word: str) -> float:
    """Bits for a run of letters' shape: lowercase, Capitalised, ALL CAPS, or mixed (what a wrong Cyrillic code
    page makes of case: "пРИВЕТ"); and two alphabetic scripts in one word ("Zaїółж")."""
    if word.islower() or len(word) == 1 or word == word.upper() == word.lower():
        bits = 0.0
    elif word.istitle():
        bits = 1.5
    elif word.isupper():
        bits = 1.0
    else:  # each lowercase letter followed by a capital
        bits = 8.0 * sum(1 for a, b in zip(word, word[1:], strict=False) if a.islower() and b.isupper())
    # a final form inside a word: Greek final sigma, Hebrew final kaf, mem, nun, pe, tsadi
    bits += 10.0 * len(_FINAL_INSIDE.findall(word))
    if not word.isascii():
        scripts = {_kind(c)[1] for c in word}
        alphabetic = scripts & _ALPHABETIC
        if len(alphabetic) > 1 or ("" in scripts and alphabetic - {"LATIN"}):  # "" in scripts: a CJK char
            bits += 15.0
        elif len(word) >= 4 and alphabetic <= _VOWELLED and not _VOWELS.intersection(word.lower()):
            bits += 8.0  # no vowel in a word of four letters: "РНЩЪВСГЪЩН" (EUC-JP's kanji as ISO-8859-5)
    return bits


def _score(text: str) -> float:
    """Bits of ``text``: its characters (letters by the best language of each script) and its words' shapes."""
    counts = collections.Counter(text)
    bits = 0.0
    letters: dict[str, dict[str, int]] = collections.defaultdict(dict)  # script -> lowercase letter -> count
    cjk: list[tuple[str, int]] = []
    for c, n in counts.items():
        kind, script = _kind(c)
        if kind == "letter":
            low = c.lower() if len(c.lower()) == 1 else c
            by_script = letters[script]
            by_script[low] = by_script.get(low, 0) + n
        elif kind == "cjk":
            cjk.append((c, n))
        else:
            bits += _KIND_BITS[kind] * n
    words = collections.Counter(_LETTERS.findall(text))
    bigrams: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for word, n in words.items():
        low = word.lower()
        for i in range(len(low) - 1):
            bigrams[_kind(low[i])[1]][low[i : i + 2]] += n
    # each script past the first: a Russian text with English words pays once; "Price: €5" read as DOS Cyrillic's
    # "Price: А5" pays for a second script for one letter
    bits += _SCRIPT_BITS * max(0, len(letters) + bool(cjk) - 1)
    for script, seen in letters.items():
        langs = [lang for lang, (s, _) in _LANGS.items() if s == script]
        if not langs:
            bits += _RARE_SCRIPT_BITS * sum(seen.values())
            continue
        pairs = bigrams[script]
        bits += min(
            _LESS_COMMON.get(lang, 0.0)
            + sum(n * _letter_bits(lang).get(c, _UNLISTED_BITS) for c, n in seen.items())
            - _BIGRAM_BITS * sum(n for pair, n in pairs.items() if pair in _bigrams(lang))
            for lang in langs
        )
    if cjk:
        bits += min(sum(n * _cjk_bits(c)[i] for c, n in cjk) for i in range(4))
    for word, n in words.items():
        if not word.isascii():
            bits += n * _word_bits(word)
    bits += (
        8.0 * len(_GLUED.findall(text))
        + 5.0 * len(_LEADING.findall(text))
        + 10.0 * len(_LONE_MARK.findall(text))
    )
    bits += 6.0 * len(_CJK_LATIN.findall(text))
    return bits
