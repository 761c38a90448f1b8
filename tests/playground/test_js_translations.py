"""The page's scripts in Simplified Chinese (locale/zh_Hans/LC_MESSAGES/djangojs.po): every text
they pass to gettext is translated, as written in the compiled catalog the site serves, and with
Django's catalog loaded (as base.html does) they write times and stats in Chinese; without it,
in English. The catalog is read here with Python's gettext, so no gettext tools are needed; the
script checks run in Node."""

from __future__ import annotations

import gettext as python_gettext
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import RequestFactory

from playground import views

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "static" / "js"
MESSAGES = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
NODE = shutil.which("node")

# A call of gettext or ngettext, not a method (window.gettext) nor a definition.
CALL = re.compile(r"(?<![\w.$])(?<!function )(n?gettext)\(")
LITERAL = re.compile(r'\s*"((?:[^"\\\n]|\\.)*)"')
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Comments are not code: a gettext("…") in one is not a text the page shows.
COMMENT = re.compile(r"^\s*//[^\n]*$|/\*.*?\*/", re.MULTILINE | re.DOTALL)


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False


def script_files() -> list[Path]:
    return sorted(path for path in SCRIPTS.rglob("*.js") if "vendor" not in path.parts)


def translatable_calls() -> list[tuple[str, str, str | None, str]]:
    """(file, msgid, msgid_plural, the source after the call) for every call in the scripts."""
    calls = []
    for path in script_files():
        source = COMMENT.sub("", path.read_text(encoding="utf-8"))
        for match in CALL.finditer(source):
            rest = source[match.end() :]
            name = path.relative_to(ROOT).as_posix()
            singular = LITERAL.match(rest)
            if not singular:
                calls.append((name, "", None, rest[:60]))
                continue
            plural = None
            if match.group(1) == "ngettext":
                after = rest[singular.end() :]
                second = re.match(r"\s*," + LITERAL.pattern, after)
                plural = json.loads(f'"{second.group(1)}"') if second else ""
            calls.append((name, json.loads(f'"{singular.group(1)}"'), plural, rest[:60]))
    return calls


def read_po(path: Path) -> list[Entry]:
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        entry = Entry()
        fields: dict[str, str] = {}
        keyword = ""
        for line in block.splitlines():
            if line.startswith("#~"):
                entry.obsolete = True
            elif line.startswith("#,"):
                entry.flags.update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[keyword] += json.loads(line)
            else:
                keyword, _, value = line.partition(" ")
                fields[keyword] = json.loads(value)
        entry.msgid = fields.get("msgid", "")
        entry.msgid_plural = fields.get("msgid_plural")
        entry.msgctxt = fields.get("msgctxt")
        for keyword, text in fields.items():
            if keyword == "msgstr":
                entry.msgstr[0] = text
            elif keyword.startswith("msgstr["):
                entry.msgstr[int(keyword[7:-1])] = text
        entries.append(entry)
    return entries


def translations() -> dict[str, Entry]:
    return {entry.msgid: entry for entry in read_po(MESSAGES / "djangojs.po") if entry.msgid}


def test_every_translatable_call_in_the_scripts_passes_plain_string_literals() -> None:
    # makemessages (xgettext) only finds literals: a template literal or a variable is never
    # translated.
    calls = translatable_calls()

    assert len(calls) > 50, "the scripts' texts were found"
    assert [call for call in calls if not call[1] or call[2] == ""] == []


def test_every_text_the_scripts_show_has_a_chinese_translation() -> None:
    entries = translations()
    untranslated = []
    for name, msgid, plural, _ in translatable_calls():
        entry = entries.get(msgid)
        if entry is None or entry.msgid_plural != plural or not all(entry.msgstr.values()):
            untranslated.append((name, msgid))

    assert untranslated == []


def test_the_catalog_has_no_fuzzy_obsolete_or_stray_entries() -> None:
    entries = read_po(MESSAGES / "djangojs.po")
    header = entries[0]
    used = {msgid for _, msgid, _, _ in translatable_calls()}

    assert header.msgid == "" and "fuzzy" not in header.flags
    assert "Plural-Forms: nplurals=1; plural=0;" in header.msgstr[0]
    assert [entry.msgid for entry in entries if "fuzzy" in entry.flags or entry.obsolete] == []
    assert {entry.msgid for entry in entries[1:]} == used
    assert all(set(entry.msgstr) == {0} for entry in entries[1:]), "Chinese has one plural form"


def test_a_translation_keeps_every_placeholder_of_its_text() -> None:
    mismatched = [
        entry.msgid
        for entry in translations().values()
        for text in entry.msgstr.values()
        if sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(entry.msgid))
    ]

    assert mismatched == []


def test_the_compiled_catalog_matches_the_po_file() -> None:
    with (MESSAGES / "djangojs.mo").open("rb") as compiled:
        catalog = python_gettext.GNUTranslations(compiled)
    stale = []
    for entry in translations().values():
        if entry.msgid_plural is None:
            found = catalog.gettext(entry.msgid)
        else:
            found = catalog.ngettext(entry.msgid, entry.msgid_plural, 2)
        if found != entry.msgstr[0]:
            stale.append(entry.msgid)

    assert stale == [], "run: msgfmt -o djangojs.mo djangojs.po"
    assert catalog.info()["plural-forms"] == "nplurals=1; plural=0;"


def test_a_text_the_server_and_the_scripts_both_write_reads_the_same_from_either() -> None:
    # The server renders a page as it stands and the scripts keep it live: a status line, a
    # stats line or a provenance line must not change words when the scripts take it over.
    # The server's msgids may carry markup (a <span> around the model's name); ours don't.
    def bare(text: str) -> str:
        return re.sub(r"<[^>]+>", "", text)

    scripts = translations()
    differing = []
    for entry in read_po(MESSAGES / "django.po"):
        ours = scripts.get(bare(entry.msgid))
        if not entry.msgid or entry.msgctxt is not None or ours is None:
            continue
        if bare(entry.msgstr[0]) != ours.msgstr[0]:
            differing.append((entry.msgid, entry.msgstr[0], ours.msgstr[0]))

    assert differing == []


# --- the scripts, in Node ----------------------------------------------------------------------

needs_node = pytest.mark.skipif(NODE is None, reason="needs node (Debian: apt-get install nodejs)")

STATS = {
    "queue_seconds": 0.52,
    "ttft_seconds": 4.24,
    "tokens": 120,
    "tokens_per_second": 41.3,
    "duration_seconds": 125,
    "finish_reason": "eos_token",
}
CHECK = {"verdict": "correct", "expected": "9.9", "note": ""}


def chinese_catalog() -> str:
    """The script /jsi18n/ serves a visitor whose language is Simplified Chinese."""
    response = views.javascript_catalog(RequestFactory().get("/jsi18n/zh-hans/"), "zh-hans")
    assert response.status_code == 200
    return response.content.decode()


def written(catalog: str | None) -> dict[str, object]:
    """What the scripts write, with the catalog run first as base.html does, or without one."""
    script = (
        "import vm from 'node:vm';\n"
        "const catalog = JSON.parse(process.argv[1]);\n"
        "if (catalog) vm.runInThisContext(catalog);\n"
        "const f = await import('./static/js/stream/format.js');\n"
        "const facts = await import('./static/js/stream/facts.js');\n"
        "const i18n = await import('./static/js/stream/i18n.js');\n"
        "const [stats, check] = JSON.parse(process.argv[2]);\n"
        "console.log(JSON.stringify({\n"
        "  measured: [0.52, 4.24, 12, 125].map(f.formatSeconds),\n"
        "  waits: [45, 125, 3905].map(f.formatEta),\n"
        "  stats: f.statParts(stats),\n"
        "  facts: f.factsLine(stats, { model_id: 'reflection-playground/simulator' }),\n"
        "  check: facts.checkSummary(check),\n"
        "  place: i18n.interpolate(i18n.gettext('In line: #%(position)s'), { position: 3 }),\n"
        "  reflections: [1, 2].map((n) =>\n"
        "    i18n.interpolate(\n"
        "      i18n.ngettext('%(count)s reflection', '%(count)s reflections', n), { count: n })),\n"
        "  pieces: i18n.interpolateNodes(i18n.gettext('Served by %(model)s'), { model: 0 }),\n"
        "}));\n"
    )
    result = subprocess.run(
        [
            NODE or "node",
            "--input-type=module",
            "-e",
            script,
            json.dumps(catalog),
            json.dumps([STATS, CHECK]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


@needs_node
def test_with_the_chinese_catalog_the_scripts_write_times_and_stats_in_chinese() -> None:
    page = written(chinese_catalog())

    assert page["measured"] == ["0.52 秒", "4.2 秒", "12 秒", "2 分 05 秒"]
    assert page["waits"] == ["45 秒", "2 分 05 秒", "1 小时 5 分"]
    assert page["stats"] == [
        "排队 0.52 秒",
        "首个词元 4.2 秒",
        "120 个词元",
        "41.3 词元/秒",
        "共计 2 分 05 秒",
        "正常结束",
    ]
    assert page["facts"] == "simulator · 2 分 05 秒 · 41.3 词元/秒"
    assert page["check"] == "正确。预期答案：9.9。"
    assert page["place"] == "排队中：第 3 位"
    assert page["reflections"] == ["1 次反思", "2 次反思"]
    assert page["pieces"] == ["由 ", 0, " 提供"]


@needs_node
def test_without_a_catalog_the_scripts_write_english() -> None:
    # /jsi18n/ failed to load (or a test runs the modules bare): the page still reads right.
    page = written(None)

    assert page["measured"] == ["0.52 s", "4.2 s", "12 s", "2 min 05 s"]
    assert page["waits"] == ["45 s", "2 min 05 s", "1 h 5 min"]
    assert page["stats"] == [
        "Queue 0.52 s",
        "First token 4.2 s",
        "120 tokens",
        "41.3 tokens/s",
        "2 min 05 s in all",
        "finished normally",
    ]
    assert page["facts"] == "simulator · 2 min 05 s · 41.3 tokens/s"
    assert page["check"] == "Correct. Expected: 9.9."
    assert page["place"] == "In line: #3"
    assert page["reflections"] == ["1 reflection", "2 reflections"]
    assert page["pieces"] == ["Served by ", 0]
