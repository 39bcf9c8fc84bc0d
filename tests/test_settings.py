"""The one source of settings: flags, environment, defaults, allowed values."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from emotion2vec_ui.settings import (
    OPTIONS,
    add_options,
    default_settings,
    parse_settings,
    read_auth,
)

PACKAGE = Path(__file__).resolve().parents[1] / "emotion2vec_ui"


def parse(program: str, argv: list[str], environ: dict):
    parser = argparse.ArgumentParser()
    add_options(parser, program)
    return parse_settings(parser, program, argv, environ)[1]


def test_flag_beats_environment_beats_default():
    assert parse("cli", [], {}).window_s == 30.0
    assert parse("cli", [], {"E2V_WINDOW_S": "20"}).window_s == 20.0
    assert parse("cli", ["--window-s", "10"], {"E2V_WINDOW_S": "20"}).window_s == 10.0


def test_lanes_reach_the_engine_as_a_count_or_its_default():
    assert parse("cli", [], {}).engine_options()["lanes"] is None  # load_model's default for the device
    assert parse("server", [], {"E2V_LANES": "auto"}).engine_options()["lanes"] is None
    assert parse("cli", ["--lanes", "1"], {"E2V_LANES": "2"}).engine_options()["lanes"] == 1
    assert parse("server", [], {"E2V_LANES": "2"}).engine_options()["lanes"] == 2


def test_a_shared_server_accepts_less_than_the_command_line():
    server, cli = default_settings("server"), default_settings("cli")
    assert server.max_file_mb < cli.max_file_mb and server.max_duration_s < cli.max_duration_s
    limits = server.engine_options()["limits"]
    assert limits.max_file_bytes == server.max_file_bytes and limits.max_duration_s == server.max_duration_s


@pytest.mark.parametrize("argv, environ, expected", [
    (["--window-s", "300"], {}, "--window-s: '300' must be between 5 and 60"),
    ([], {"E2V_WINDOW_S": "abc"}, "E2V_WINDOW_S: 'abc' is not a valid value"),
    ([], {"E2V_PRECISION": "fp8"}, "E2V_PRECISION: 'fp8' is not one of fp32, bf16, fp16"),
    (["--max-file-mb", "0"], {}, "--max-file-mb: '0' must be positive"),
    ([], {"E2V_PORT": "70000"}, "E2V_PORT: '70000' must be 1-65535"),
    ([], {"E2V_AUTH": "no-colon"}, "user:password"),
    (["--device", "gpu"], {}, "--device: 'gpu' must be cpu, cuda or cuda:N"),
    ([], {"E2V_BACKEND": "onnx", "E2V_PRECISION": "int8"}, "E2V_PRECISION=int8 does not apply to E2V_BACKEND=onnx"),
    (["--precision", "int8"], {"E2V_BACKEND": "onnx"}, "--precision int8 does not apply to E2V_BACKEND=onnx"),
    (["--lanes", "0"], {}, "--lanes: '0' must be auto or a whole number of at least 1"),
    ([], {"E2V_LANES": "two"}, "E2V_LANES: 'two' is not a valid value"),
])
def test_bad_values_end_the_program_naming_the_flag_or_variable(argv, environ, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        parse("server", argv, environ)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_password_can_come_from_a_file(tmp_path):
    secret = tmp_path / "login"
    secret.write_text("alice:s3cret:with:colons\n")
    settings = parse("server", [], {"E2V_AUTH_FILE": str(secret)})
    assert settings.auth == ("alice", "s3cret:with:colons")
    assert read_auth("bob:pw", str(secret)) == ("bob", "pw")  # an explicit login wins
    with pytest.raises(ValueError, match="cannot read"):
        read_auth(None, str(tmp_path / "missing"))


def test_every_option_is_named_consistently():
    for option in OPTIONS:
        assert option.env == "E2V_" + option.name.upper(), option
        assert option.flag == "--" + option.name.replace("_", "-")
    assert len({option.env for option in OPTIONS}) == len(OPTIONS)


# Standard variables of the libraries the engine runs on, read where they take effect.
LIBRARY_VARIABLES = {"OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "HF_HOME", "HF_HUB_CACHE",
                     "MODELSCOPE_CACHE"}


def test_only_the_settings_module_reads_the_programs_variables():
    """E2V_* variables are read in settings.py alone; elsewhere only the libraries' own standard ones."""
    read = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "settings.py" and re.search(r"os\.environ|getenv\(", text):
            read[str(path.relative_to(PACKAGE))] = set(re.findall(r"(?:environ\.get|getenv)\(\s*\"(\w+)\"", text))
    assert read, "the engine reads OMP_NUM_THREADS: the scan found nothing, so it scans the wrong place"
    assert {name: names - LIBRARY_VARIABLES for name, names in read.items() if names - LIBRARY_VARIABLES} == {}
    unnamed = [name for name in read if re.search(r'os\.environ(?!\.get\(")|getenv\((?!")', (PACKAGE / name).read_text())]
    assert unnamed == [], "every read of the environment names its variable, so this test sees it"


