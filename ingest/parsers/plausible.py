"""Whether a page's extracted text reads as text at all. A PDF font without a Unicode mapping (a subset, Type3 or
custom-encoded font with no ToUnicode map) has its glyph codes read through a default encoding: the page's text
layer then holds control characters (glyph ids read as codes: ``7KH\\x03TXLFN`` for "The quick"), runs of
ASCII punctuation (``!"#$%&'``), runs of Latin-1 letters (``þýüûúù``), letters shifted by a constant ("Uif rvjdl
cspxo gpy") or private-use characters (symbol fonts). Indexed, that pollutes search while the page's real
content is missing.

The judgement is conservative: tables of numbers, source code, formulas, URLs, part numbers, bibliographies,
non-Latin scripts and short pages must read as text. Only a page that is mostly characters no one types
(controls, private use), mostly punctuation soup, mostly Latin-1 letters, or a long Latin-script page whose
letter pairs and words fit no language is unreadable; partly garbled pages lose only their useless runs
(``strip_unusable``)."""

from __future__ import annotations

import re
import string
import unicodedata

# this many useless characters (controls, private use) making up this share of a page's characters, or controls
# this share of them: unreadable, however short the page
MIN_USELESS = 20
USELESS_SHARE = 0.5
CONTROL_SHARE = 0.1
MIN_JUDGED = 80  # fewer non-space characters than this are never judged on plausibility (a title page)
MIN_LATIN_LETTERS = 150  # letters needed to judge Latin-script letter sequences
SOUP_SHARE = 0.6  # ASCII punctuation share of a page's characters (code: 0.15-0.35, Perl 0.6) ...
SOUP_DISTINCT = 12  # ... with this many different punctuation marks ...
SOUP_WORDS = 0.2  # ... and fewer word-like tokens than this share: punctuation soup
LATIN1_SHARE = 0.4  # letters from Latin-1's upper half (à-ÿ) making up this share of a page's letters
# a long Latin-script page whose letter pairs are this rarely ones of the sample sentences below (prose in two
# dozen languages, code, part lists, names: 0.82 and up; shifted or permuted letters: 0.70 and below) ...
PLAUSIBLE_PAIRS = 0.72
COMMON_WORDS = 0.1  # ... and whose words of two letters or more are this rarely common short words
SHAPED_WORDS = 0.75  # words in lower case, capitalized or in capitals (not base64, hashes, camelCase) ...
MAX_ACRONYM = 4  # words in capitals this short are not judged (acronyms, tickers: "TCP UDP DNS", "LHR JFK")
PROSE_TOKENS = 0.6  # ... and word-like tokens (not paths, markup, mangled names): only such pages are judged

_CID = re.compile(r"\(cid:\d+\)")  # pdfminer-style leftovers of unmapped glyphs
_PRIVATE_RUN = re.compile(r"[ \t]*[\ue000-\uf8ff\U000f0000-\U0010ffff]+[ \t]*")
_PUNCT = frozenset(string.punctuation)
_TOKEN = re.compile(r"\S+")
# a token that reads as a word or a number once the punctuation around it goes: letters (any script, marks,
# inner hyphens and apostrophes), or digits with separators ("1,234.56", "12:30", "2024-05-01")
_WORDLIKE = re.compile(r"[^\W\d_][\w'’-]*|\d[\d.,:/%-]*", re.UNICODE)
_EDGES = "\"'“”‘’«»()[]{}<>.,;:!?*"
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_RULE = re.compile(r"([^\w\s])\1*")
_REPEATS = re.compile(r"([^\w\s])\1+")


def _private_use(ch: str) -> bool:
    o = ord(ch)
    return 0xE000 <= o <= 0xF8FF or o >= 0xF0000


def _useless(ch: str) -> bool:
    """A character no text means: private use (a symbol font's codes) or a control character."""
    return _private_use(ch) or (unicodedata.category(ch) == "Cc" and not ch.isspace())


def strip_unusable(text: str) -> str:
    """``text`` without private-use characters and ``(cid:N)`` leftovers: what a symbol font's bullets, arrows or
    ticks leave in readable text; nobody searches for them, and they split words for the tokenizers."""
    return _PRIVATE_RUN.sub(_gap, _CID.sub("", text))


def _gap(m: re.Match) -> str:
    """What stands for a run of private-use characters and the blanks around it: a space inside a line ("see
    \\uf0e0 page 4" -> "see page 4"), nothing at a line's start or end (a bullet)."""
    s, start, end = m.string, m.start(), m.end()
    return " " if 0 < start and end < len(s) and s[start - 1] not in "\r\n" and s[end] not in "\r\n" else ""


# Letter pairs of words, from sample sentences written for this table in the Latin-script languages most
# documents are in (and ones with unusual spellings: Polish, Czech, Hungarian, Finnish, Turkish, Vietnamese,
# Welsh); accents folded. Text whose pairs are mostly absent here is no language's.
_SAMPLES = """
the employee handbook explains how annual leave is requested approved and carried over into the next year
please submit your travel expenses within thirty days together with the original receipts from the hotel
our quarterly revenue increased because customers bought more software licences and support contracts
which of these settings should the administrator change before the server is restarted tonight
die mitarbeiter koennen ihren urlaub ueber das personalportal beantragen und der vorgesetzte genehmigt ihn
bitte schicken sie die unterlagen bis freitag an die buchhaltung damit die rechnung rechtzeitig bezahlt wird
les salaries peuvent demander leurs conges dans le portail et leur responsable doit les valider rapidement
nous vous remercions de votre confiance et restons a votre disposition pour toute question complementaire
los empleados pueden solicitar sus vacaciones a traves del portal y el jefe las aprueba en pocos dias
el informe anual muestra que las ventas crecieron gracias a los nuevos clientes de la region
i dipendenti possono chiedere le ferie tramite il portale e il responsabile le approva entro una settimana
os funcionarios podem pedir as ferias pelo portal e o gestor aprova o pedido em poucos dias uteis
de medewerkers kunnen hun vakantie aanvragen via het portaal en de leidinggevende keurt die goed
pracownicy mogą składać wnioski urlopowe przez portal a przełożony zatwierdza je w ciągu tygodnia
zaměstnanci mohou žádat o dovolenou přes portál a vedoucí ji schválí do jednoho týdne
a munkavállalók a portálon kérhetnek szabadságot és a vezető egy héten belül jóváhagyja
työntekijät voivat hakea lomaa portaalin kautta ja esimies hyväksyy hakemuksen viikon kuluessa
çalışanlar izin taleplerini portal üzerinden yapabilir ve yöneticileri bir hafta içinde onaylar
nhân viên có thể xin nghỉ phép qua cổng thông tin và người quản lý sẽ duyệt trong vòng một tuần
gall gweithwyr wneud cais am wyliau drwy'r porth a bydd y rheolwr yn ei gymeradwyo o fewn wythnos
anställda kan ansöka om semester via portalen och chefen godkänner ansökan inom en vecka
karyawan dapat mengajukan cuti melalui portal dan atasan akan menyetujuinya dalam satu minggu
angajatii pot solicita concediul prin portal iar seful direct il aproba in cel mult o saptamana
darbuotojai gali prasyti atostogu per portala o vadovas jas patvirtina per savaite
lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore
"""
_FOLD = str.maketrans(
    {"ß": "s", "æ": "a", "ø": "o", "œ": "o", "đ": "d", "ð": "d", "þ": "t", "ł": "l", "ı": "i"}
)


def _fold(word: str) -> str:
    """A word in lower-case a-z: accents dropped, a few letters without a decomposition mapped; other letters
    (another script's) stay as they are."""
    word = unicodedata.normalize("NFD", word.casefold().translate(_FOLD))
    return "".join(ch for ch in word if not unicodedata.combining(ch))


def _pairs(word: str) -> list[str]:
    return [word[i : i + 2] for i in range(len(word) - 1)]


_PAIRS = frozenset(p for w in _fold(_SAMPLES).split() for p in _pairs(w) if p.isascii() and p.isalpha())
# Short words that any page of prose in these languages uses (folded); a long page with hardly any of them,
# whose letter pairs are implausible too, is no language.
_COMMON = frozenset(
    """a an and are as at be but by for from has have he i if in is it its not of on or our that the this to was we
    will with you der die das und ist nicht mit den von zu ein eine im auf fur sie es le la les de des du et un une
    est pour dans que qui en au il pas el los las y por con se del lo o al e di che non per il da os em um uma do
    da no na het een van op voor niet i w z sie na do jest nie to a se je na v ze s k o ja on ei se ole ve bir bu
    ile icin va cua la co cac nhung duoc y yn ar och att det som pa av ar yang dan di ini itu ke ut et sed ad""".split()
)


def _latin_implausible(words: list[str]) -> bool:
    """Whether folded a-z words fit no language: few letter pairs seen in the sample sentences, and hardly a
    common short word."""
    pairs = [p for w in words for p in _pairs(w)]
    if not pairs or sum(p in _PAIRS for p in pairs) >= PLAUSIBLE_PAIRS * len(pairs):
        return False
    longer = [w for w in words if len(w) > 1]  # a single letter is as likely in garbage
    return sum(w in _COMMON for w in longer) < COMMON_WORDS * len(longer)


def why_unreadable(text: str) -> str | None:
    """The signal by which a page's text is unreadable ("useless", "punctuation", "latin-1", "letters"), or
    None when it reads as text."""
    chars = [ch for ch in _CID.sub("\x00", text) if not ch.isspace()]
    useless = sum(_useless(ch) for ch in chars)
    # control characters are never text; a font whose glyph ids read as codes shows its spaces as one (id 3)
    controls = sum(unicodedata.category(ch) == "Cc" for ch in chars)
    if useless >= MIN_USELESS and (
        useless >= USELESS_SHARE * len(chars) or controls >= CONTROL_SHARE * len(chars)
    ):
        return "useless"
    rest = [ch for ch in chars if not _useless(ch)]
    if len(rest) < MIN_JUDGED:
        return None
    clean = "".join(" " if _useless(ch) else ch for ch in _CID.sub(" ", text))
    # a rule or a table's border ("-----", "|", "====") is layout, neither word nor soup
    tokens = [t for t in _TOKEN.findall(clean) if not _RULE.fullmatch(t)]
    wordlike = sum(bool(_WORDLIKE.fullmatch(t.strip(_EDGES))) for t in tokens)
    punct = [ch for ch in _REPEATS.sub(r"\1", "".join(tokens)) if ch in _PUNCT]
    if (
        len(punct) >= SOUP_SHARE * len(rest)
        and len(set(punct)) >= SOUP_DISTINCT
        and wordlike < SOUP_WORDS * len(tokens)
    ):
        return "punctuation"
    letters = [ch for ch in rest if ch.isalpha()]
    if (
        sum("\u00c0" <= ch <= "\u00ff" for ch in letters) >= LATIN1_SHARE * max(len(letters), 1)
        and len(letters) >= MIN_JUDGED // 2
    ):
        return "latin-1"
    # words of tokens without digits ("0xafa28bb9", "b2:ba:f2" or "X509v3" are codes, not words misread), short
    # ones in capitals aside (acronyms, tickers, airport codes: "TCP UDP DNS", "LHR JFK")
    words = [
        w
        for t in tokens
        if not any(ch.isdigit() for ch in t)
        for w in _WORD.findall(t)
        if not (w.isupper() and len(w) <= MAX_ACRONYM)
    ]
    latin = [f for f in map(_fold, words) if f.isascii()]
    n_latin = sum(map(len, latin))
    if n_latin < MIN_LATIN_LETTERS or n_latin * 5 < len(rest) * 3:  # too little, or not mostly Latin letters
        return None
    # prose-shaped: words as people write them, mostly apart (not paths, markup, identifiers, base64 or hashes)
    shaped = sum(w.islower() or w.isupper() or w.istitle() for w in words)
    if shaped < SHAPED_WORDS * len(words) or wordlike < PROSE_TOKENS * len(tokens):
        return None
    return "letters" if _latin_implausible(latin) else None
