"""The English catalogue is complete and current (issue 30): every Japanese text the code
and the templates mark for translation — what `pybabel extract -F babel.cfg -k _l` finds —
has an English translation in translations/en/LC_MESSAGES/messages.po, none fuzzy, none
left over. Update it with `pybabel extract` and `pybabel update` (docs/ARCHITECTURE.md,
"Text and languages")."""

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from tests.helpers import ROOT

KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}


def extracted() -> set[str]:
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_text_has_its_english_and_nothing_is_left_over():
    with open(ROOT / "translations" / "en" / "LC_MESSAGES" / "messages.po", "rb") as f:
        catalog = read_po(f)
    translated = {m.id: m for m in catalog if m.id}
    wanted = extracted()
    assert sorted(wanted - set(translated)) == []  # run pybabel extract and update, then translate
    assert sorted(set(translated) - wanted) == []  # texts no longer used
    assert [m.id for m in translated.values() if not m.string or m.fuzzy] == []


def test_every_action_the_log_records_has_a_label():
    """An auditor filters the log by what was done: an action without a label (the
    attachments' once) can be neither read nor chosen on the page."""
    import re

    from web.forms import ACTION_LABELS

    written = set()
    for folder in ("api", "web", "renkei", "realtime"):
        for path in (ROOT / folder).glob("*.py"):
            text = path.read_text()
            written |= set(re.findall(r'action="([a-z_]+\.[a-z_]+)"', text))
            written |= set(re.findall(r'(?:record|count_outside)\(\s*"([a-z_]+\.[a-z_]+)"', text))
    assert len(written) > 60 and sorted(written - set(ACTION_LABELS)) == []
