"""Plain text in legacy 8-bit and CJK code pages and in UTF-16 without a BOM, from one short line (a title) to
long files, reads as written (ingest/parsers/charset.py); ASCII and UTF-8 are unchanged."""

import pytest

from ingest.parsers import parse
from ingest.parsers.charset import detect

# language -> (a title or a short line, a paragraph), and the code pages its files are found in
TEXTS = {
    "ru": (
        "Годовой отчёт о продажах за третий квартал",
        "Сотрудники должны подать заявление на отпуск за две недели до его начала.\n"
        "Заявление подписывает руководитель отдела, а затем его передают в бухгалтерию.\n"
        "Если у вас есть вопросы, обратитесь в службу поддержки по телефону 25-10.",
    ),
    "uk": (
        "Щорічна відпустка становить двадцять чотири дні.",
        "Київ є столицею України і найбільшим містом країни.\n"
        "Інструкція з експлуатації пристрою містить правила безпеки, які слід прочитати перед увімкненням.",
    ),
    "el": (
        "Η ετήσια άδεια είναι είκοσι ημέρες.",
        "Άρθρο 5: Υποχρεώσεις του εργοδότη.\n"
        "Ο εργοδότης οφείλει να ενημερώνει τους εργαζομένους για τους κινδύνους της εργασίας τους.\n"
        "Η Αθήνα είναι η πρωτεύουσα και η μεγαλύτερη πόλη της Ελλάδας.",
    ),
    "he": (
        "העובדים זכאים לחופשה שנתית בתשלום.",
        "ירושלים היא עיר הבירה של ישראל והעיר הגדולה ביותר במדינה.\n"
        "יש לקרוא את הוראות השימוש לפני הפעלת המכשיר בפעם הראשונה.",
    ),
    "fr": (
        "Les employés ont droit à des congés payés.",
        "L'été dernier, nous sommes allés à la plage près de l'hôtel.\n"
        "Le café coûte 5 euros à la gare ; très cher, mais il est délicieux.\n"
        "Où est la bibliothèque ? Elle se trouve à côté de la mairie.",
    ),
    "de": (
        "Schöne Grüße aus München",
        "Die Mitarbeiter müssen den Urlaub rechtzeitig beantragen.\n"
        "Größere Änderungen werden über die Fußgängerzone hinaus angekündigt.",
    ),
    "es": (
        "¿Dónde está la estación de tren?",
        "El niño comió mañana en la montaña con su familia.\n"
        "Los empleados tienen derecho a vacaciones pagadas según la ley española.",
    ),
    "pl": (
        "Pracownicy mają prawo do płatnego urlopu.",
        "Książka leży na półce obok zeszytów i długopisów.\n"
        "Wrocław, 12 września: Główny Urząd Statystyczny opublikował nowe dane o źródłach dochodu.",
    ),
    "cs": (
        "Praha je hlavní město České republiky.",
        "Zaměstnanci mají nárok na dovolenou v délce čtyř týdnů.\n"
        "Příliš žluťoučký kůň úpěl ďábelské ódy, řekl učitel dětem.",
    ),
    "tr": (
        "Çalışanlar yıllık izin hakkına sahiptir.",
        "İstanbul Türkiye'nin en büyük şehridir ve boğazın iki yakasında kurulmuştur.\n"
        "Şirket ağı güvenliği için öğrenciler düzenli olarak eğitim alır.",
    ),
    "lt": (
        "Darbuotojai turi teisę į kasmetines atostogas.",
        "Vilnius yra Lietuvos sostinė ir didžiausias šalies miestas.\n"
        "Prašymą dėl atostogų reikia pateikti skyriaus vadovui prieš dvi savaites.",
    ),
    "lv": (
        "Darbiniekiem ir tiesības uz ikgadējo atvaļinājumu.",
        "Rīga ir Latvijas galvaspilsēta un lielākā pilsēta valstī.\n"
        "Iesniegumu par atvaļinājumu jāiesniedz nodaļas vadītājam divas nedēļas iepriekš.",
    ),
    "et": (
        "Töötajatel on õigus iga-aastasele puhkusele.",
        "Tallinn on Eesti pealinn ja suurim linn.\n"
        "Puhkuse avaldus tuleb esitada osakonna juhatajale kaks nädalat enne puhkuse algust.",
    ),
    "zh": (
        "员工每年享有带薪年假十五天。",
        "北京是中国的首都，也是全国的政治和文化中心。\n请假需提前向主管提交申请，并说明请假的原因和时间。",
    ),
    "zh-Hant": (
        "會議於週五舉行，請準時出席。",
        "台北是台灣最大的城市之一。\n員工每年享有帶薪年假，請假需提前向主管提出申請。",
    ),
    "ja": (
        "会議は金曜日に開催されます。",
        "社員は毎年有給休暇を取得できます。\n申請書は上司に提出してください。ファイルをダウンロードしてから記入します。",
    ),
    "ko": (
        "직원은 매년 유급 휴가를 받을 수 있습니다.",
        "서울은 대한민국의 수도이며 가장 큰 도시입니다.\n회의는 금요일 오후에 열립니다. 자료를 미리 준비해 주세요.",
    ),
}
ENCODINGS = {
    "ru": ("cp1251", "koi8_r", "iso8859_5", "cp866", "utf_16_le", "utf_16_be"),
    "uk": ("cp1251", "koi8_u"),
    "el": ("cp1253", "iso8859_7", "utf_16_le"),
    "he": ("cp1255", "iso8859_8", "utf_16_be"),
    "fr": ("cp1252", "latin_1", "iso8859_15"),
    "de": ("cp1252", "latin_1", "cp850"),
    "es": ("cp1252", "latin_1"),
    "pl": ("cp1250", "iso8859_2"),
    "cs": ("cp1250", "iso8859_2"),
    "tr": ("cp1254",),
    "lt": ("cp1257", "iso8859_13"),
    "lv": ("cp1257",),
    "et": ("cp1257",),
    "zh": ("gb18030", "gbk", "utf_16_le", "utf_16_be"),
    "zh-Hant": ("big5",),
    "ja": ("shift_jis", "euc_jp", "utf_16_le"),
    "ko": ("euc_kr", "utf_16_be"),
}
CASES = [
    pytest.param(lang, length, enc, id=f"{lang}-{enc}-{length}")
    for lang, encodings in ENCODINGS.items()
    for enc in encodings
    for length in ("short", "long")
]


@pytest.mark.parametrize(("lang", "length", "encoding"), CASES)
def test_text_in_a_legacy_encoding_reads_as_written(lang, length, encoding):
    short, paragraph = TEXTS[lang]
    text = short if length == "short" else "\n\n".join([paragraph] * 40)
    doc = parse(text.encode(encoding), "notes.txt")
    assert doc.text == text
    if length == "long":
        assert doc.notices == []


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Привет, мир!", "koi8_r"),
        ("Отпуск 28 дней.", "cp1251"),
        ("Ένα μικρό σπίτι", "iso8859_7"),
        ("הוראות שימוש", "cp1255"),
        ("Zażółć gęślą jaźń.", "iso8859_2"),
        ("Cœur de la forêt", "iso8859_15"),
        ("東京は日本の首都です。", "euc_jp"),
        ("使用說明書", "big5"),
        ("בְּרֵאשִׁית בָּרָא אֱלֹהִים", "cp1255"),  # pointed: was read as KOI8-U "ДСйъ бИМшИа"
        ("مَرْحَبًا بِكُمْ فِي الْمَوْقِعِ", "cp1256"),
        ("Щука и ёж", "iso8859_5"),  # was Windows-1256 "ةمعذ ط ٌض"
        ("产品价格表", "utf_16_le"),  # no NUL or control byte says UTF-16
        ("Tack så mycket för hjälpen!", "cp1252"),
    ],
)
def test_one_short_line(text, encoding):
    assert parse(text.encode(encoding), "title.txt").text == text


def test_a_koi8_line_is_not_read_as_windows_1251():
    # Windows-1251 makes KOI8-R's lowercase capitals: "нРОСЯЙ 28 ДМЕИ." (was indexed so)
    assert detect("Отпуск 28 дней.".encode("koi8_r")).encoding == "koi8_r"
    assert detect("Отпуск 28 дней.".encode("cp1251")).encoding == "cp1251"


def test_a_guess_is_named_in_a_notice():
    # four characters and a mark that read nearly as well in Big5 ("辣茩嫖還ㄐ")
    doc = parse("欢迎光临！".encode("gb18030"), "title.txt")
    assert doc.text == "欢迎光临！"
    assert doc.notices == [
        "The file's character encoding is not certain; it was read as GB18030 (Chinese). If its text looks "
        "wrong, save it as UTF-8 and upload it again."
    ]


@pytest.mark.parametrize(
    "text", ["Price list – 2024", "Temperature: 25°C.", "It's 5 ½ inches", "Děkuji za pozornost"]
)
def test_one_character_past_ascii_is_no_reason_for_a_notice(text):
    doc = parse(text.encode("cp1250" if "ě" in text else "cp1252"), "note.txt")
    assert doc.text == text and doc.notices == []


def test_all_capitals_greek_is_not_read_as_koi8():
    # Greek capitals without accents read in KOI8-R as transliterated Russian: "одгциес вягсгс тоу сустглатос"
    doc = parse("ΟΔΗΓΙΕΣ ΧΡΗΣΗΣ ΤΟΥ ΣΥΣΤΗΜΑΤΟΣ".encode("cp1253"), "title.txt")
    assert doc.text == "ΟΔΗΓΙΕΣ ΧΡΗΣΗΣ ΤΟΥ ΣΥΣΤΗΜΑΤΟΣ"


@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII notes: 5 items, 3 done.",
        "Café “quoted” — 5 €, Straße, Привет, Ελλάδα, שלום, 北京, 東京, 서울",
    ],
)
def test_ascii_and_utf8_are_unchanged_and_certain(text):
    doc = parse(text.encode(), "notes.txt")
    assert doc.text == text and doc.notices == []


def test_a_declared_charset_is_honoured():
    page = '<html><head><meta charset="koi8-r"><title>Отчёт</title></head><body><p>Отпуск 28 дней.</p></body></html>'
    doc = parse(page.encode("koi8_r"), "page.html")
    assert doc.title == "Отчёт" and "Отпуск 28 дней." in doc.text


def test_utf8_lines_in_a_cyrillic_file_do_not_sway_the_guess():
    data = "Список сотрудников отдела продаж\n".encode("cp1251") + "Håkan Durán\n".encode() * 3
    assert (
        parse(data, "staff.txt").text
        == "Список сотрудников отдела продаж\n" + "Håkan Durán\n" * 2 + "Håkan Durán"
    )


def test_iso_2022_jp():
    text = "会議は金曜日に開催されます。資料を準備してください。"
    assert parse(text.encode("iso2022_jp"), "memo.txt").text == text
