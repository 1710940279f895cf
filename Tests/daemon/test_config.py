"""prged --check-config and startup with bad configs: every mistake is named by its JSON path."""
import json
import subprocess

import pytest

from conftest import PRGED, base_config


def check(tmp, cfg, raw=None):
    path = tmp / "c.json"
    path.write_text(raw if raw is not None else json.dumps(cfg))
    p = subprocess.run([str(PRGED), "--check-config", str(path)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def test_good_config_passes(tmp):
    rc, out = check(tmp, base_config(tmp))
    assert rc == 0, out
    assert "ok" in out


@pytest.mark.parametrize("over,needle", [
    ({"sockett": "/x"}, "sockett: unknown key"),
    ({"training": {"steps_per_minut": 3}}, "training.steps_per_minut: unknown key"),
    ({"limits": {"max_clients": "10"}}, "limits.max_clients: must be an integer"),
    ({"limits": {"max_clients": 0}}, "limits.max_clients: 0 is out of range"),
    ({"limits": {"max_request_bytes": 1.5}}, "limits.max_request_bytes: must be an integer"),
    ({"training": {"max_seconds": -1}}, "training.max_seconds: -1 is out of range"),
    ({"training": []}, "training: must be an object"),
    ({"threads": True}, "threads: must be an integer"),
    ({"state_dir": "relative/dir"}, "state_dir: must be an absolute path"),
    ({"log_level": "loud"}, "log_level: must be one of"),
    ({"numeric_mode": "fp16"}, "numeric_mode: must be one of"),
    ({"allowed_uids": [1000, -1]}, "allowed_uids[1]: must be a user id"),
    ({"default_profile": "../etc"}, "default_profile: must be a profile name"),
    ({"trainer": {"checkpoint": "/tmp/x.gguf"}}, "trainer.checkpoint: not allowed here"),
    ({"trainer": "sst2"}, "trainer: must be an object"),
    ({"socket": "/tmp/" + "s" * 120}, "socket: longer than"),
])
def test_bad_field_is_named(tmp, over, needle):
    rc, out = check(tmp, base_config(tmp, **over))
    assert rc == 1, out
    assert needle in out, out


def test_missing_required_field(tmp):
    cfg = base_config(tmp)
    del cfg["model"]
    rc, out = check(tmp, cfg)
    assert rc == 1 and "model: required" in out, out


def test_trainer_options_checked_by_the_library(tmp):
    cfg = base_config(tmp, trainer={"q": 1, "estimatorr": "prge"})
    rc, out = check(tmp, cfg)
    assert rc == 1 and "trainer" in out and "estimatorr" in out, out


def test_missing_model_file(tmp):
    rc, out = check(tmp, base_config(tmp, model=str(tmp / "nope.gguf")))
    assert rc == 1 and "nope.gguf" in out, out


@pytest.mark.parametrize("raw,needle", [
    ('{"socket": "/tmp/x.sock",}', "malformed JSON"),
    ('{"socket": "/tmp/x.sock"} trailing', "malformed JSON"),
    ("[1, 2]", "must be an object"),
    ("", "malformed JSON"),
])
def test_malformed_file(tmp, raw, needle):
    rc, out = check(tmp, None, raw=raw)
    assert rc == 1 and needle in out, out


def test_unreadable_file(tmp):
    p = subprocess.run([str(PRGED), "--check-config", str(tmp / "absent.json")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and "absent.json" in p.stderr


def test_daemon_refuses_to_start_with_a_bad_config(tmp):
    path = tmp / "c.json"
    path.write_text(json.dumps(base_config(tmp, limits={"max_clientz": 3})))
    p = subprocess.run([str(PRGED), str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "limits.max_clientz: unknown key" in p.stderr


def test_usage(tmp):
    p = subprocess.run([str(PRGED)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage" in p.stderr


def test_packaged_example_config_is_valid(tmp):
    """packaging/prged.example.json, with its paths pointed at this machine."""
    from conftest import MODEL, ROOT
    cfg = json.loads((ROOT / "packaging/prged.example.json").read_text())
    cfg.update(socket=str(tmp / "s.sock"), state_dir=str(tmp / "state"), model=str(MODEL))
    rc, out = check(tmp, cfg)
    assert rc == 0, out
