"""The judgement of a page's extracted text (``ingest.parsers.plausible``): what fonts without a Unicode mapping
leave is unreadable; prose in many languages and scripts, code, tables, formulas and short pages are not."""

from __future__ import annotations

import random

import pytest

from ingest.parsers.plausible import strip_unusable, why_unreadable

PROSE = {
    "english": "Section 4.2 Retention of records. All invoices, contracts and correspondence relating to a customer "
    "account must be kept for at least seven years after the account is closed. Records may be stored "
    "electronically if the scanned copy is legible and complete. The finance team reviews the archive every "
    "January and destroys records whose retention period has ended.",
    "german": "Die Geschäftsführung hat beschlossen, die Arbeitszeiterfassung zum ersten Quartal vollständig auf das "
    "neue System umzustellen. Überstunden werden künftig automatisch berechnet und können innerhalb von drei "
    "Monaten durch Freizeit ausgeglichen werden.",
    "french": "Le présent règlement s'applique à l'ensemble du personnel, y compris les stagiaires et les "
    "intérimaires. Chaque salarié doit respecter les horaires affichés et prévenir son supérieur en cas "
    "d'absence imprévue. Les frais de déplacement sont remboursés sur présentation des justificatifs.",
    "czech": "Společnost si vyhrazuje právo změnit podmínky programu bez předchozího upozornění. Zákazník je "
    "povinen zkontrolovat správnost údajů uvedených ve smlouvě a případné chyby neprodleně nahlásit "
    "zákaznické podpoře. Čtvrtletní vyúčtování bude zasláno elektronickou poštou.",
    "turkish": "Şirket, program koşullarını önceden bildirimde bulunmaksızın değiştirme hakkını saklı tutar. Müşteri, "
    "sözleşmede yer alan bilgilerin doğruluğunu kontrol etmekle ve olası hataları derhal müşteri "
    "hizmetlerine bildirmekle yükümlüdür.",
    "capitals": "TERMS AND CONDITIONS OF SALE. THE SELLER SHALL NOT BE LIABLE FOR ANY INDIRECT, INCIDENTAL OR "
    "CONSEQUENTIAL DAMAGES ARISING OUT OF THE USE OF THE PRODUCTS. ALL WARRANTIES, EXPRESS OR IMPLIED, ARE "
    "EXCLUDED TO THE FULLEST EXTENT PERMITTED BY LAW. THE BUYER SHALL INSPECT THE GOODS PROMPTLY UPON DELIVERY "
    "AND NOTIFY THE SELLER IN WRITING OF ANY DEFECTS WITHIN FOURTEEN DAYS.",
}
LEGITIMATE = {
    **PROSE,
    # a glossary's acronyms: capitals in no language's letter pairs
    "acronyms": "HTTP HTTPS TCP UDP DNS DHCP SMTP IMAP LDAP SAML OIDC JWT REST SOAP YAML JSON XML CSV PDF RTF DOCX XLSX "
    "PPTX ODT ODS SQL ACID CRUD ORM MVC MVVM SPA PWA CDN WAF IDS IPS VPN SSH SFTP SCP NTP SNMP ICMP ARP BGP OSPF",
    # languages whose sentences are not among the sample sentences
    "icelandic": "Fyrirtækið áskilur sér rétt til að breyta skilmálum áætlunarinnar án fyrirvara. Viðskiptavinur "
    "ber ábyrgð á að yfirfara réttmæti upplýsinga í samningnum og tilkynna þjónustuverinu tafarlaust um "
    "allar villur. Ársfjórðungsuppgjör verður sent með tölvupósti.",
    "swahili": "Kampuni ina haki ya kubadilisha masharti ya mpango bila taarifa ya awali. Mteja anawajibika "
    "kuhakikisha usahihi wa taarifa zilizomo kwenye mkataba na kuripoti makosa yoyote mara moja kwa huduma "
    "kwa wateja. Taarifa ya robo mwaka itatumwa kwa barua pepe.",
    "zulu": "Inkampani inelungelo lokushintsha imigomo yohlelo ngaphandle kwesaziso sangaphambili. Ikhasimende "
    "linesibopho sokuhlola ukunemba kolwazi olusenkontilekeni futhi libike noma yimaphi amaphutha "
    "ngokushesha emnyangweni wamakhasimende.",
    "vietnamese": "Công ty có quyền thay đổi các điều khoản của chương trình mà không cần thông báo trước. Khách "
    "hàng có trách nhiệm kiểm tra tính chính xác của thông tin ghi trong hợp đồng và báo ngay cho bộ phận "
    "chăm sóc khách hàng nếu phát hiện sai sót.",
    "numbers": "Region   Q1 2024    Q2 2024    Q3 2024    Change\nNorth    1,234.56   1,310.20   1,402.75   +6.9%\n"
    "South    987.10     954.33     1,001.02   +4.9%\nEast     2,045.00   2,112.48   2,230.91   +5.6%\n"
    "West     765.43     801.11     799.87     -0.2%\n(EUR thousands; figures unaudited)",
    "c": "#include <stdio.h>\nstatic int parse_args(int argc, char **argv, struct opts *o) {\n"
    '    for (int i = 1; i < argc; i++) {\n        if (!strcmp(argv[i], "-v")) o->verbose++;\n'
    '        else if (!strncmp(argv[i], "--out=", 6)) o->out = argv[i] + 6;\n'
    '        else { fprintf(stderr, "usage: %s [-v]\\n", argv[0]); return -1; }\n    }\n    return 0;\n}',
    "perl": "while (<>) { chomp; next if /^\\s*#/; my ($k, $v) = split /\\s*=\\s*/, $_, 2; $h{$k} = $v; }\n"
    'print join(",", map { "$_=$h{$_}" } sort keys %h), "\\n";\n'
    "$s =~ s{(\\d+)/(\\d+)}{$2-$1}g; @a = grep { !/^-/ } @ARGV; %seen = (); @u = grep { !$seen{$_}++ } @a;",
    "math": "Theorem 2. Let f : ℝ → ℝ be continuous on [a, b]. Then ∫_a^b f(x) dx = F(b) − F(a), where F′ = f.\n"
    "Proof. For ε > 0 choose δ > 0 with |f(x) − f(y)| < ε whenever |x − y| < δ. Then\n"
    "|∑_{i=1}^{n} f(ξ_i)Δx_i − ∫ f| ≤ ε(b − a) → 0 as max Δx_i → 0. ∎ ‖Ax‖₂ ≤ σ_max(A)‖x‖₂",
    "bibliography": '[1] A. Vaswani, N. Shazeer, N. Parmar et al., "Attention is all you need," in Proc. NeurIPS, '
    "2017, pp. 5998–6008.\n[2] Y. Bengio, R. Ducharme, P. Vincent, C. Jauvin, J. Mach. Learn. Res. 3 (2003) "
    "1137–1155.\n[3] T. Mikolov et al., arXiv:1301.3781 [cs.CL], 2013. https://arxiv.org/abs/1301.3781",
    "urls": "https://example.com/api/v2/users?id=42&sort=desc\nhttps://docs.python.org/3/library/unicodedata.html"
    "#unicodedata.category\nftp://files.example.org/pub/releases/2024-05-01/pkg-1.2.3.tar.gz\n"
    "mailto:support@example.com\n/usr/local/share/doc/autoglm/README.md\nlibs/qvm/include/boost/qvm/quat.hpp",
    "parts": "XJ-4421-B   M8x1.25 hex bolt, zinc   6205-2RS   SKU 00-1142/A   Qty 250\n"
    "RT-0093-C   M6x1.0 washer DIN 125    6203-ZZ    SKU 00-0981/B   Qty 1,000\n"
    "AB-7710-K   O-ring 12x2 NBR70        608-2RS    SKU 01-2231/C   Qty 75",
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n"
    "RTESMBAGA1UEChMJQmFsdGltb3JlMRMwEQYDVQQLEwpDeWJlclRydXN0MSIwIAYD\n"
    "VQQDExlCYWx0aW1vcmUgQ3liZXJUcnVzdCBSb290MB4XDTAwMDUxMjE4NDYwMFoX\n-----END CERTIFICATE-----",
    "markdown table": "| Algorithm | Usage | Key length |\n| --------------- | ----------- | ---------- |\n"
    "| `'RSA-OAEP'` | `'encrypt'` | 2048 |\n| `'AES-GCM'` | `'wrapKey'` | 256 |\n| `'HMAC'` | `'sign'` | 512 |",
    "chinese": "员工可以通过人事门户网站申请年假，直属经理应在五个工作日内审批。未使用的假期最多可以结转五天到下一年度。"
    "出差费用须在返回后三十天内凭原始发票报销。",
    "arabic": "يمكن للموظفين طلب الإجازة السنوية من خلال بوابة الموارد البشرية، ويجب على المدير المباشر الموافقة عليها "
    "خلال خمسة أيام عمل.",
    "hebrew": "עובדים יכולים לבקש חופשה שנתית דרך פורטל משאבי אנוש, והמנהל הישיר צריך לאשר אותה בתוך חמישה ימי עבודה.",
    "russian": "Сотрудники могут подать заявление на ежегодный отпуск через кадровый портал, а непосредственный "
    "руководитель утверждает его в течение пяти рабочих дней.",
    "hindi": "कर्मचारी मानव संसाधन पोर्टल के माध्यम से वार्षिक अवकाश के लिए आवेदन कर सकते हैं, और उनके प्रबंधक पाँच कार्य "
    "दिवसों के भीतर इसे स्वीकृत करते हैं।",
    "mixed": "Das Meeting findet am 12.03. statt. The agenda: 1) Budget 2024 — Überblick; 2) Roadmap (Q2/Q3); "
    "3) 采购流程 review; 4) AOB. Bitte bringt eure Zahlen mit, please send slides by Friday 17:00 CET.",
    "title": "Annual Report 2024",
    "bullets": "\uf0b7 Submit the form by Friday.\n\uf0b7 Attach all receipts.\n\uf0b7 Keep a copy for your records.\n"
    "\uf0a7 Managers approve within five days.\n\uf0d8 Payments go out on the 25th of each month.",
}


def _shift(text: str, k: int) -> str:
    return "".join(
        chr((ord(c) - 97 + k) % 26 + 97) if "a" <= c <= "z" else chr((ord(c) - 65 + k) % 26 + 65) if "A" <= c <= "Z"
        else c
        for c in text
    )  # fmt: skip


def _permute(text: str, seed: int) -> str:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    shuffled = letters[:]
    random.Random(seed).shuffle(shuffled)
    table = dict(zip(letters, shuffled, strict=True))
    table |= {a.upper(): b.upper() for a, b in table.items()}
    return "".join(table.get(c, c) for c in text)


def _sequential(text: str, start: int) -> str:
    """Codes given from ``start`` in the order characters first appear (a subset font), spaces kept."""
    codes: dict[str, int] = {}
    return "".join(c if c.isspace() else chr(codes.setdefault(c, start + len(codes))) for c in text)


@pytest.mark.parametrize("name", LEGITIMATE)
def test_legitimate_text_is_readable(name):
    assert why_unreadable(LEGITIMATE[name]) is None


@pytest.mark.parametrize("name", PROSE)
def test_letters_shifted_or_permuted_are_unreadable(name):
    for k in (1, 2, 3, 7, 13, 25):
        assert why_unreadable(_shift(PROSE[name], k)) == "letters", k
    for seed in range(3):
        assert why_unreadable(_permute(PROSE[name], seed)) == "letters", seed


@pytest.mark.parametrize("name", PROSE)
def test_codes_read_through_a_default_encoding_are_unreadable(name):
    text = PROSE[name]
    assert why_unreadable(_sequential(text, 1)) == "useless"  # control characters
    assert why_unreadable(_sequential(text, 0x21)) == "punctuation"  # !"#$%&'()*+,-./
    assert why_unreadable("".join(chr(0xFF - ord(c) % 64) for c in text)) == "latin-1"  # ÿþýüûú
    assert why_unreadable("".join(c if c == " " else chr(0xF000 + ord(c) % 256) for c in text)) == "useless"
    assert why_unreadable(" ".join(f"(cid:{ord(c)})" for c in text)) == "useless"


def test_short_text_is_never_judged_on_plausibility():
    assert why_unreadable("Uif rvjdl cspxo gpy kvnqt") is None  # shifted, but a title's worth
    assert why_unreadable("!\"#$%&'()*+") is None
    # a few control characters: dropped later, nothing to name
    assert why_unreadable("\x01\x02\x03 \x04") is None
    # ... but a page of nothing but control characters is read through a default encoding, however short
    controls = "".join(map(chr, range(0x0E, 0x20))) + " " + "".join(map(chr, range(1, 9)))
    assert why_unreadable(controls) == "useless"


def test_private_use_characters_and_cid_leftovers_are_stripped():
    assert (
        strip_unusable("\uf0b7 Submit the form.\n\uf0b7 Attach receipts.")
        == "Submit the form.\nAttach receipts."
    )
    assert strip_unusable("see \uf0e0 page 4, then (cid:12)(cid:13) sign") == "see page 4, then  sign"
    assert strip_unusable("plain text, 3 × 4 ≤ 12") == "plain text, 3 × 4 ≤ 12"
