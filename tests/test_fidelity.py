"""The text-fidelity score: garbage that extractors produce scores low, clean text in any
language scores high, and the gate before chunking quarantines garbage with a reason."""

from __future__ import annotations

import pytest

from mdp.fidelity import (
    DEFAULT_MIN_FIDELITY,
    chunk_extractor,
    clean,
    measure,
    screen_elements,
)

CLEAN = {
    "en": "The committee reviewed the proposal in detail and agreed to fund the first phase of the "
    "project. Work will begin in March, and a progress report is due by the end of the year.",
    "de": "Die Vorlesung behandelt die Grundlagen der Topologie: offene Mengen, Stetigkeit und "
    "Kompaktheit. Übungsblätter werden wöchentlich ausgegeben; die Größe der Gruppen ist auf zwölf "
    "Studierende begrenzt. Außerdem gibt es ein Tutorium für Erstsemester.",
    "fr": "Le comité a examiné la proposition en détail et a accepté de financer la première phase "
    "du projet. Les travaux commenceront en mars ; un rapport d'étape est attendu à la fin de l'année.",
    "pl": "Komitet szczegółowo przeanalizował wniosek i zgodził się sfinansować pierwszą fazę projektu. "
    "Prace rozpoczną się w marcu, a sprawozdanie z postępów należy złożyć do końca roku.",
    "cs": "Výbor podrobně přezkoumal návrh a souhlasil s financováním první fáze projektu. Práce "
    "začnou v březnu a zpráva o pokroku má být předložena do konce roku.",
    "vi": "Ủy ban đã xem xét chi tiết đề xuất và đồng ý tài trợ cho giai đoạn đầu của dự án. Công việc "
    "sẽ bắt đầu vào tháng Ba, và báo cáo tiến độ phải nộp trước cuối năm.",
    "ru": "Комитет подробно рассмотрел предложение и согласился финансировать первый этап проекта. "
    "Работы начнутся в марте, а отчёт о ходе работ должен быть представлен до конца года.",
    "el": "Η επιτροπή εξέτασε λεπτομερώς την πρόταση και συμφώνησε να χρηματοδοτήσει την πρώτη φάση "
    "του έργου. Οι εργασίες θα ξεκινήσουν τον Μάρτιο.",
    "ar": "راجعت اللجنة الاقتراح بالتفصيل ووافقت على تمويل المرحلة الأولى من المشروع. ستبدأ الأعمال في "
    "شهر مارس، ومن المقرر تقديم تقرير مرحلي بحلول نهاية العام.",
    "he": "הוועדה בחנה את ההצעה בפירוט והסכימה לממן את השלב הראשון של הפרויקט. העבודה תתחיל במרץ, "
    "ודוח התקדמות יוגש עד סוף השנה.",
    "hi": "समिति ने प्रस्ताव की विस्तार से समीक्षा की और परियोजना के पहले चरण को वित्त पोषित करने पर "
    "सहमति व्यक्त की। काम मार्च में शुरू होगा।",
    "th": "คณะกรรมการได้พิจารณาข้อเสนออย่างละเอียดและตกลงที่จะให้ทุนสนับสนุนระยะแรกของโครงการ งานจะเริ่มในเดือนมีนาคม",
    "ja": "委員会は提案を詳細に検討し、プロジェクトの第一段階に資金を提供することに同意した。"
    "作業は三月に始まり、年末までに進捗報告書を提出する予定である。委員会は提案を詳細に検討した。",
    "zh": "委员会详细审查了该提案，并同意为项目的第一阶段提供资金。工作将于三月开始，年底前须提交进度报告。"
    "委员会详细审查了该提案，并同意为项目的第一阶段提供资金。",
    "ko": "위원회는 제안서를 자세히 검토하고 프로젝트의 첫 번째 단계에 자금을 지원하기로 합의했다. "
    "작업은 3월에 시작되며, 연말까지 진행 보고서를 제출해야 한다.",
    "math": "Let f: X → Y be continuous. For every ε > 0 there is δ > 0 with |x − y| < δ ⇒ "
    "|f(x) − f(y)| < ε. Hence ∑ α_i ≤ β and ∫ g(t) dt ≥ 0, where x ∈ ℝ³ and A ⊂ B ∪ C.",
    "table": "Year 2019 2020 2021 2022\nRevenue 12.4 13.1 15.8 17.2\nCosts 10.1 10.9 12.0 13.3\n"
    "Margin (%) 18.5 16.8 24.1 22.7\n€ 1,234.56 — £ 99.00 — ¥ 10,000",
    "contents": "Inhaltsverzeichnis\n1 Topologische Grundbegriffe 2\n"
    + "1.1 Topologische Räume . . . . . . . . . . . . . . . . . . . . . . . 2\n"
    + "1.2 Metrische Räume . . . . . . . . . . . . . . . . . . . . . . . . 6\n" * 4,
}


@pytest.mark.parametrize("language", sorted(CLEAN))
def test_clean_text_in_many_languages_scores_high(language: str) -> None:
    fidelity = measure(CLEAN[language])
    assert fidelity.readable(DEFAULT_MIN_FIDELITY), (language, fidelity)
    assert fidelity.score >= 0.97 and fidelity.unmapped == 0 and fidelity.mojibake == 0, fidelity


def test_cid_runs_are_unmapped_glyphs() -> None:
    text = "Einf(cid:252)hrung in die Geometrie (cid:28)(cid:20)(cid:30)(cid:40) und Topologie. " * 6
    fidelity = measure(text)
    assert fidelity.cid_runs == 30 and fidelity.unmapped == 30
    assert not fidelity.readable(DEFAULT_MIN_FIDELITY)
    assert "(cid:N)" in fidelity.problem() and "(cid:252)" in fidelity.problem()
    cleaned = clean(text)
    assert "(cid:" not in cleaned.text and cleaned.removed_glyphs == 30


def test_replacement_and_control_characters_are_unmapped_glyphs() -> None:
    for garbage in ("\ufffd", "\x03", "\x1c", "\x00", "\x7f", "\ue000"):
        text = f"Hello {garbage}{garbage} world {garbage}{garbage} and {garbage} more. " * 8
        fidelity = measure(text)
        assert fidelity.unmapped == 40, (repr(garbage), fidelity)
        assert not fidelity.readable(DEFAULT_MIN_FIDELITY), repr(garbage)
        assert garbage not in clean(text).text
    # layout characters are not garbage
    assert measure("one\ttwo\nthree\r\nfour\x0cfive\x0bsix").unmapped == 0


def test_a_few_unmapped_glyphs_in_long_text_are_tolerated_and_removed() -> None:
    text = CLEAN["en"] * 5 + " k (cid:28) |C| "
    fidelity = measure(text)
    assert fidelity.readable(DEFAULT_MIN_FIDELITY) and not fidelity.flawless
    assert clean(text).text.count("(cid:") == 0


def test_mojibake_is_detected_and_repaired_when_ftfy_can() -> None:
    broken = CLEAN["de"].encode("utf-8").decode("cp1252")  # UTF-8 read as Windows-1252
    assert "Ã¼" in broken
    fidelity = measure(broken)
    assert fidelity.mojibake > 0 and not fidelity.readable(DEFAULT_MIN_FIDELITY)
    repaired = clean(broken)
    assert repaired.repaired_mojibake and repaired.text == CLEAN["de"]
    issue_sample = "Ä¿ ¡¡ Â¼ Ã¤Ã¶Ã¼ Ã„hnlich " * 5
    assert not measure(issue_sample).readable(DEFAULT_MIN_FIDELITY)


@pytest.mark.parametrize(
    ("language", "encoding", "wrongly_read_as"),
    [
        ("ru", "cp1251", "cp1252"),
        ("el", "iso8859-7", "latin-1"),
        ("ar", "cp1256", "cp1252"),
        ("ko", "euc-kr", "latin-1"),
        ("ja", "shift_jis", "cp1252"),
    ],
)
def test_wrong_script_text_scores_low(language: str, encoding: str, wrongly_read_as: str) -> None:
    garbled = CLEAN[language].encode(encoding).decode(wrongly_read_as, errors="replace")
    fidelity = measure(garbled)
    assert not fidelity.readable(DEFAULT_MIN_FIDELITY), (language, fidelity)
    assert fidelity.score < 0.8


def test_letters_of_a_foreign_script_inside_words_score_low() -> None:
    # pdfium on a WeasyPrint Arabic PDF: Greek/Coptic letters where Arabic ones belong
    text = " يبيبَح˴ ϲΒϴΒhabibi يبيبَح\nhabibi يبيبَح يبيبَح˴ ϲΒϴΒ\n" * 3
    fidelity = measure(text)
    assert fidelity.mess > 0.05 and not fidelity.readable(DEFAULT_MIN_FIDELITY)


def test_empty_text_is_not_readable_and_has_no_problems() -> None:
    assert measure("").characters == 0 and not measure("  \n ").readable()


def _elements(*texts: str) -> list:
    from unstructured.documents.elements import ElementMetadata, NarrativeText

    return [NarrativeText(text=t, metadata=ElementMetadata(page_number=1)) for t in texts]


def test_gate_quarantines_garbage_with_a_reason_and_cleans_the_rest() -> None:
    garbage = _elements("Ðàáîòû íà÷íóòñÿ â ìàðòå, à îò÷¸ò î õîäå ðàáîò äîëæåí áûòü ïðåäñòàâëåí. " * 4)
    verdict = screen_elements(garbage, DEFAULT_MIN_FIDELITY)
    assert verdict.reason and verdict.reason.startswith("unreadable text: implausible text")
    assert "re-save the file as UTF-8" in verdict.reason

    mostly_good = _elements(CLEAN["en"], CLEAN["en"] + " (cid:12) and \ufffd too")
    verdict = screen_elements(mostly_good, DEFAULT_MIN_FIDELITY)
    assert verdict.reason is None
    assert verdict.metadata["unmapped_glyphs_removed"] == 2
    assert all("(cid:" not in e.text and "\ufffd" not in e.text for e in mostly_good)


def test_chunk_extractor_follows_the_pages() -> None:
    metadata = {"extractor": "pdfminer", "extractor_pages": {"pdfminer": [1, 2], "ocr": [3], "acroform": [3]}}
    assert chunk_extractor(metadata, [1], "x") == "pdfminer"
    assert chunk_extractor(metadata, [2, 3], "x") == "acroform+ocr+pdfminer"
    assert chunk_extractor({"extractor": "pdfium"}, [7], "x") == "pdfium"
    assert chunk_extractor({}, [], "unstructured-markdown") == "unstructured-markdown"
