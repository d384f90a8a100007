"""The command-example index (model/examples.py), its builders' parsers and the NLC2CMD metric."""

from __future__ import annotations

import sqlite3

import pytest

from bashlsp.model import examples
from bashlsp.model.errors import ExampleIndexError
from bashlsp.model.examples import (
    MAX_QUERY_WORDS,
    Example,
    ExampleIndex,
    few_shot_block,
    nlc2cmd_score,
    query_words,
    search_all,
    utilities_and_flags,
    write_index,
)
from bashlsp.training.corpus.examples import parse_cheat_sheet, parse_eg_page, parse_man_examples, split_of
from bashlsp.training.eval_commands import exact_match, first_command

PAIRS = [
    ("Find files with the SGID bit set", "find / -perm -2000", "tldr", "find"),
    ("Find files by name", "find . -name '*.txt'", "tldr", "find"),
    ("Display information on CPU usage", "mpstat -P ALL", "tldr", "mpstat"),
    ("Read hexadecimal bytes from a file", "xxd file.bin", "cheat", "xxd"),
    ("Create a gzipped archive of a directory", "tar czf dir.tar.gz dir", "man", "tar.1"),
    ("Extract a gzipped archive", "tar xzf dir.tar.gz", "eg", "tar"),
]


def make_index(path, pairs=PAIRS, kind="commands"):
    entries = [Example(d, c, s, p, "MIT") for d, c, s, p in pairs]
    write_index(path, entries, {"tldr": {"licence": "CC-BY-4.0", "credit": "tldr-pages"}}, kind=kind)
    return ExampleIndex(path)


def test_search_ranks_the_matching_description_first(tmp_path):
    index = make_index(tmp_path / "examples.sqlite")
    found = index.search("# Find SGID files", 3)
    assert found[0].command == "find / -perm -2000"
    assert found[0].label() == "tldr find"
    assert index.search("show cpu usage", 1)[0].command == "mpstat -P ALL"  # stemming: usage, cpu
    assert index.entries == len(PAIRS)
    assert index.sources["tldr"]["entries"] == 3 and index.sources["tldr"]["credit"] == "tldr-pages"


def test_queries_never_parse_document_text_as_fts_syntax(tmp_path):
    index = make_index(tmp_path / "examples.sqlite")
    for text in ['"unbalanced', "NEAR(a b) AND OR NOT *", "find -name ^ : ( ) {}", "", "# #", "ファイルを探す"]:
        assert isinstance(index.search(text, 5), list)
    huge = "find " + "word " * 20_000 + "x" * 100_000  # a 200 KB comment
    assert len(query_words(huge)) <= MAX_QUERY_WORDS
    assert index.search(huge, 5)[0].page == "find"


def test_missing_and_corrupt_index_files_get_a_clear_error(tmp_path):
    with pytest.raises(ExampleIndexError, match="does not exist"):
        ExampleIndex(tmp_path / "absent.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ExampleIndexError, match="corrupt or not an example index"):
        ExampleIndex(garbage)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(ExampleIndexError, match="corrupt or not an example index"):
        ExampleIndex(other)
    path = tmp_path / "examples.sqlite"
    make_index(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    connection.commit()
    connection.close()
    with pytest.raises(ExampleIndexError, match="format '99'"):
        ExampleIndex(path)


def test_the_index_is_opened_read_only(tmp_path):
    index = make_index(tmp_path / "examples.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        index._connection.execute("DELETE FROM examples")


def test_search_all_merges_indexes_without_repeating_a_command(tmp_path):
    shipped = make_index(tmp_path / "a.sqlite")
    personal = make_index(tmp_path / "b.sqlite", [("find setgid files", "find / -perm -2000", "personal", "x.sh")])
    found = search_all([shipped, personal], "find sgid files", 5)
    commands = [e.command for e in found]
    assert commands.count("find / -perm -2000") == 1 and len(found) <= 5


def test_few_shot_block_is_the_tldr_document_format():
    block = few_shot_block([Example("List  files", "ls -l\n", "tldr", "ls", "x"), Example("Go", "cd", "eg", "cd", "x")])
    assert block == "# List files\nls -l\n\n# Go\ncd\n\n"
    assert few_shot_block([]) == ""


def test_cheat_sheet_pairs():
    sheet = "# To find directories:\nfind . -type d\n\n# To list\n# all files:\nls -a\nls -A\n# Next\necho hi\n"
    assert parse_cheat_sheet(sheet) == [
        ("find directories", "find . -type d"),
        ("list all files", "ls -a\nls -A"),
        ("Next", "echo hi"),
    ]


def test_eg_page_pairs_keep_prompted_lines_only():
    page = (
        "# find\n\nfiles named file.txt\n\n    find . -name file.txt\n\nUse -iname:\n\n    $ find . -iname f\n    ./F\n"
    )
    assert parse_eg_page(page) == [("files named file.txt", "find . -name file.txt"), ("Use -iname", "find . -iname f")]


def test_man_examples_pairs_need_the_program_name():
    rendered = (
        "NAME\n       find - search\n\nEXAMPLES\n"
        "   Simple approach\n       •      Find files named core and delete them.\n\n"
        "                  $ find /tmp -name core | xargs rm\n\n"
        "              Note that this is a note.\n\n"
        "                  $ echo unrelated\n\n"
        "SEE ALSO\n       xargs(1)\n"
    )
    assert parse_man_examples(rendered, "find") == [
        ("Find files named core and delete them", "find /tmp -name core | xargs rm")
    ]


def test_split_is_by_page_and_follows_tldr_for_tldr_pages():
    from bashlsp.training.corpus import tldr

    assert all(split_of("tldr", page) == tldr.split_of(page) for page in ["find", "tar", "ls", "git-commit"])
    assert {split_of("cheat", f"page{i}") for i in range(200)} == {"train", "holdout"}


def test_nlc2cmd_score():
    assert nlc2cmd_score("find / -perm -2000", "find / -perm -2000") == 1.0
    assert nlc2cmd_score("ls -l", "find . -type f") == -1.0
    assert nlc2cmd_score("", "ls") == -1.0
    # same utility, flags {-type} vs {-type, -name}: S_F = (2*1 - 2)/2 = 0, score (1 + 0)/2
    assert nlc2cmd_score("find . -type f", "find . -type f -name x") == 0.5
    # two utilities in the reference, one right: (1 - 1) / 2
    assert nlc2cmd_score("find .", "find . | wc -l") == pytest.approx(0.0)
    assert utilities_and_flags("sudo LANG=C /usr/bin/sort --key=2 -r f && x") == [
        ("sort", frozenset({"--key", "-r"})),
        ("x", frozenset()),
    ]
    assert -1 <= nlc2cmd_score("echo 'open quote", "echo x") <= 1


def test_exact_match_and_first_command():
    assert exact_match("tar  xzf a.tgz", "tar xzf a.tgz") and not exact_match("", "")
    assert first_command("# note\n\nfind . \\\n  -type f\necho done\n") == "find . \\\n-type f"
    assert first_command(None) == ""


def test_a_page_summary_finds_its_examples(tmp_path):
    entries = [Example("Start a session", "pomo start", "tldr", "pomo", "CC-BY-4.0")] + [
        Example(d, c, s, p, "MIT") for d, c, s, p in PAIRS
    ]
    path = tmp_path / "examples.sqlite"
    write_index(path, entries, {}, summaries={("tldr", "pomo"): "A Pomodoro timer for the terminal"})
    assert ExampleIndex(path).search("start a pomodoro timer", 1)[0].command == "pomo start"


def test_a_page_whose_descriptions_match_ranks_its_example_first(monkeypatch):
    """Each example scores with its page: the btrfs-scrub page, all about scrubs, outweighs a
    download example that shares more of the comment's words by itself."""
    entries = [
        Example("Start a scrub", "btrfs scrub start /mnt", "tldr", "btrfs-scrub", "CC-BY-4.0"),
        Example("Show the status of a running scrub", "btrfs scrub status /mnt", "tldr", "btrfs-scrub", "CC-BY-4.0"),
        Example("Cancel a running scrub", "btrfs scrub cancel /mnt", "tldr", "btrfs-scrub", "CC-BY-4.0"),
        Example("Resume a previously cancelled download", "aria2c --continue url", "tldr", "aria2c", "CC-BY-4.0"),
    ] + [Example(d, c, s, p, "MIT") for d, c, s, p in PAIRS]
    index = ExampleIndex.in_memory(entries, "scrub")
    assert index.search("Resume a cancelled scrub", 1)[0].page == "btrfs-scrub"
    monkeypatch.setattr(examples, "PAGE_WEIGHT", 0.0)  # each example on its own words: the download wins
    assert index.search("Resume a cancelled scrub", 1)[0].page == "aria2c"


def test_a_page_known_by_its_summary_alone_offers_its_program(tmp_path):
    """A page with a summary and no example (a man page's NAME line, a tldr page whose examples
    are held out): its program, with the summary as the description and the page's licence."""
    path = tmp_path / "examples.sqlite"
    entries = [Example(d, c, s, p, "MIT") for d, c, s, p in PAIRS]
    summaries = {("tldr", "kde-builder"): "Easily build KDE components from their source repositories"}
    summaries[("man", "b2sum.1")] = "compute and check BLAKE2 message digest"
    write_index(
        path,
        entries,
        {"tldr": {"licence": "CC-BY-4.0"}},
        summaries=summaries,
        page_licences={("man", "b2sum.1"): "GPL-3+; Debian package coreutils 9.1-1"},
    )
    index = ExampleIndex(path)
    (found,) = index.search("Compile a KDE component from the source", 1)
    assert (found.command, found.source, found.licence) == ("kde-builder", "tldr", "CC-BY-4.0")
    assert found.description == summaries[("tldr", "kde-builder")]
    (found,) = index.search("check a BLAKE2 digest", 1)
    assert (found.command, found.licence) == ("b2sum", "GPL-3+; Debian package coreutils 9.1-1")
    assert index.search("Find files with the SGID bit set", 1)[0].command == "find / -perm -2000"  # examples still win


def test_utility_command():
    from bashlsp.model.examples import utility_command

    assert utility_command("tldr", "git-push", {"git", "git-push"}) == "git push"
    assert utility_command("tldr", "kde-builder", {"kde-builder"}) == "kde-builder"
    assert utility_command("man", "tar.1", {"tar"}) == "tar"
    assert utility_command("man", "ansible-config.1", {"ansible"}) == "ansible-config"  # a man page names a program
    # With examples, what they start with: the name is not split at a guessed hyphen.
    commands = ["apt-add-repository ppa:x/y", "sudo apt-add-repository --remove ppa:x/y"]
    assert utility_command("tldr", "apt-add-repository", {"apt"}, commands) == "apt-add-repository"
    assert utility_command("tldr", "apt-add-repository", {"apt"}) == "apt add-repository"  # no example: the guess
    assert utility_command("tldr", "git-push", {"git"}, ["git push", "GIT_TRACE=1 git push -f"]) == "git push"
    assert utility_command("tldr", "7z", set(), ["7za x a.7z", "7z a a.7z f", "7z l a.7z"]) == "7z"
    # An example that starts with another program does not rename the page.
    assert utility_command("man", "losetup.8", set(), ["dd if=/dev/zero of=f bs=1M", "dd if=a of=b"]) == "losetup"
    assert utility_command("man", "sudo.8", set(), ["sudo ls /root"]) == "sudo"


def test_the_best_utilitys_most_typical_example_comes_first():
    """Among the top utility's examples, the one with the highest expected NLC2CMD score against
    the others goes first (bm25 says little about flags); another utility never takes its place."""
    ranked = [
        Example("a", "tar --exclude x -cvzf a.tgz dir", "tldr", "tar", "", -30.0),
        Example("b", "rsync -a dir host:", "tldr", "rsync", "", -29.0),
        Example("c", "tar -czf a.tgz dir", "tldr", "tar", "", -28.0),
        Example("d", "tar -czf b.tgz dir2", "tldr", "tar", "", -27.0),
    ]
    first, *rest = examples.consensus_first(ranked)
    assert first.command == "tar -czf a.tgz dir" and first.score == -30.0
    assert [e.description for e in rest] == ["a", "b", "d"]
    assert examples.consensus_first(ranked[1:2]) == ranked[1:2]


def test_script_start_is_the_best_examples_line_adapted_to_the_comment():
    def start(*commands, comment=""):
        return examples.script_start([Example("x", command, "tldr", "x", "") for command in commands], comment)

    assert start("od -A x -t x1 path/to/file", "xxd file", comment='Read bytes from "/dev/midi1"') == (
        "od -A x -t x1 /dev/midi1\n"
    )
    assert start("LC_ALL=C sort -u file\nmore") == "LC_ALL=C sort -u file\n"  # its first line
    assert start("X=1") == "X=1\n"
    # a line that goes on is cut after its utility and first flags: the model writes the rest
    assert start("sudo tar -czf a.tgz \\") == "sudo tar -czf "
    assert start("LC_ALL=C \\") == ""
    assert examples.script_start([]) == ""


def test_adapt_command_puts_the_comments_paths_and_urls_in_place_of_the_examples():
    adapt = examples.adapt_command
    assert adapt("find path/to/dir -mtime +7 -delete", "delete logs older than 7 days in /var/log.") == (
        "find /var/log -mtime +7 -delete"
    )
    assert adapt("curl -o out https://example.com/f", "fetch https://example.org/x.zip") == (
        "curl -o out https://example.org/x.zip"
    )
    assert adapt("cp 'src/a' ~/b", "copy ./build to ~/backup") == "cp './build' ~/backup"
    assert adapt("ls -la", "list /tmp") == "ls -la"  # nothing to replace
    assert adapt("grep -r foo dir/", "search for foo and/or bar") == "grep -r foo dir/"  # no path named
    assert adapt('cat "$HOME/x"', "show /etc/passwd") == 'cat "$HOME/x"'  # a variable is kept


def test_a_format_1_index_is_still_searched(tmp_path):
    """Personal indexes written before the page search (format 1: no pages_fts) keep working."""
    path = tmp_path / "old.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE examples(id INTEGER PRIMARY KEY, description TEXT NOT NULL, command TEXT NOT NULL,
            source TEXT NOT NULL, page TEXT NOT NULL, licence TEXT NOT NULL);
        CREATE TABLE pages(source TEXT NOT NULL, page TEXT NOT NULL, summary TEXT NOT NULL, PRIMARY KEY (source, page));
        CREATE VIEW examples_text AS SELECT e.id AS id, e.description, e.command, e.page,
            coalesce(p.summary, '') AS summary FROM examples e LEFT JOIN pages p ON p.source = e.source AND p.page = e.page;
        CREATE VIRTUAL TABLE examples_fts USING fts5(description, command, page, summary,
            content='examples_text', content_rowid='id', tokenize='porter unicode61');
        INSERT INTO meta VALUES ('format', '1'), ('kind', 'personal'), ('sources', '{}');
        INSERT INTO examples VALUES (1, 'back up the home folder', 'rsync -a ~ /mnt/backup', 'personal', 'b.sh', 'own');
        INSERT INTO examples_fts(examples_fts) VALUES ('rebuild');
        """
    )
    connection.commit()
    connection.close()
    assert ExampleIndex(path).search("back up my home", 1)[0].command == "rsync -a ~ /mnt/backup"


def test_few_shot_prompt_keeps_the_examples_and_the_end_of_a_long_document():
    from bashlsp.model.examples import FEW_SHOT_DOCUMENT_CHARS, few_shot_prompt

    example = Example("List files", "ls -l", "tldr", "ls", "x")
    document = "#!/bin/bash\n" + "".join(f"echo line {i}\n" for i in range(2000)) + "# list the files\n"
    prompt = few_shot_prompt([example], document)
    assert prompt.startswith("# List files\nls -l\n\n") and prompt.endswith("echo line 1999\n# list the files\n")
    assert len(prompt) <= FEW_SHOT_DOCUMENT_CHARS + 40
    assert few_shot_prompt([], document) == document


def test_few_shot_training_documents_never_show_the_example_itself(tmp_path):
    import json

    from bashlsp.training.corpus.examples import few_shot_documents

    make_index(tmp_path / "examples.sqlite").close()
    counts = few_shot_documents(tmp_path / "examples.sqlite", tmp_path / "docs", max_documents=100)
    records = [json.loads(line) for line in (tmp_path / "docs" / "tldr.jsonl").read_text().splitlines()]
    trained = [(d, c) for d, c, s, p in PAIRS if split_of(s, p) == "train"]
    assert sum(counts.values()) == len(records) == len(trained)
    with_neighbours = 0
    for record, (description, command) in zip(records, trained):
        few_shot, _, script = record["text"].rpartition("#!/bin/bash\n")
        assert script == f"# {description}\n{command}\n"
        assert command not in few_shot  # neighbours, never itself
        with_neighbours += bool(few_shot)
    assert with_neighbours >= 2  # the find pairs have each other


def test_the_dev_split_holds_train_pages_only_and_none_of_its_pairs_stay_in_its_index(tmp_path, monkeypatch):
    """The tuning split: half the pairs of some train pages, taken out of a copy of the index,
    whose page summaries it keeps."""
    import json

    from bashlsp.training.corpus import examples as builder

    monkeypatch.setattr(builder, "dev_page", lambda source, page: page in ("find", "tar"))
    pairs = PAIRS + [
        ("Find empty files", "find . -empty", "tldr", "find"),
        ("List an archive", "tar tf a.tar", "eg", "tar"),
    ]
    entries = [Example(d, c, s, p, "MIT") for d, c, s, p in pairs]
    write_index(tmp_path / "examples.sqlite", entries, {}, summaries={("tldr", "find"): "Find files"})
    counts = builder.dev_split(tmp_path / "examples.sqlite", tmp_path / "dev")
    dev = [json.loads(line) for line in (tmp_path / "dev" / "examples_holdout.jsonl").read_text().splitlines()]
    index = ExampleIndex(tmp_path / "dev" / "examples.sqlite")
    kept = {(e.description, e.command) for e in index.all_examples()}
    assert counts["dev"] == len(dev) >= 1 and counts["index"] == len(kept) == len(pairs) - len(dev)
    assert all(r["page"] in ("find", "tar") and (r["description"], r["command"]) not in kept for r in dev)
    assert index.page_summaries()[0] == {("tldr", "find"): "Find files"}


def test_evaluate_commands_runs_all_three_modes_through_the_servers_path(tmp_path, tiny_checkpoint):
    import json

    from bashlsp.model.checkpoint import load_checkpoint
    from bashlsp.training.eval_commands import evaluate_commands

    make_index(tmp_path / "examples.sqlite").close()
    holdout = tmp_path / "holdout.jsonl"
    held = [
        ("Find all files with the SGID bit", "find / -perm -2000", "tldr", "find"),
        ("say hi", "echo hi", "eg", "x"),
    ]
    holdout.write_text(
        "".join(json.dumps(dict(zip(("description", "command", "source", "page"), h))) + "\n" for h in held)
    )
    result = evaluate_commands(
        load_checkpoint(tiny_checkpoint), holdout, tmp_path / "examples.sqlite", ("retrieval", "model", "both")
    )
    retrieval = result["modes"]["retrieval"]
    assert retrieval["examples"][0]["answer"] == "find / -perm -2000"
    assert retrieval["exact_match"] == 0.5 and retrieval["nlc2cmd"] == 0.0  # (1 + -1) / 2
    for mode in ("model", "both"):
        scores = result["modes"][mode]
        assert scores["total"] == 2 and -1 <= scores["nlc2cmd"] <= 1 and 0 <= scores["bash_n"] <= 1


def test_only_a_model_trained_on_example_prompts_gets_them():
    from bashlsp.model.examples import uses_examples

    assert not uses_examples({})
    assert not uses_examples({"prompt_formats": ["fim"]})
    assert uses_examples({"prompt_formats": ["fim", "examples"]})
