"""Protocol round trips and error paths on the real daemon."""
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from conftest import LABELS, PRGED, RPCError, example


def test_socket_is_private(daemon):
    st = os.stat(daemon.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_round_trips(daemon, tmp):
    c = daemon.client()
    s = c.call("status")
    assert s["abi_version"] >= 1 and s["profile"]["name"] == "default"
    assert s["training"]["state"] == "idle" and s["clients"] == 1
    assert c.call("list_profiles")["profiles"][0]["name"] == "default"

    r = c.call("select_profile", {"name": "alice"})
    assert r == {"profile": "alice", "created": True}
    assert c.call("list_profiles")["selected"] == "alice"
    with pytest.raises(RPCError) as e:
        c.call("select_profile", {"name": "bob", "create": False})
    assert e.value.code == 1002

    r = c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    assert r["added"] == 4 and r["n_train"] == 4 and r["profile"] == "alice"
    r = c.call("add_examples", {"examples": [example(9)], "split": "dev"})
    assert r["n_dev"] == 1
    assert c.call("status")["profile"]["n_train"] == 4
    assert c.call("status", {"profile": "default"})["profile"]["n_train"] == 0

    r = c.call("classify", {"prompt": "a wonderful film It was", "labels": LABELS})
    assert r["best"] in (0, 1) and r["label"] == LABELS[r["best"]] and len(r["scores"]) == 2
    assert all(x < 0 for x in r["scores"])  # log-probabilities
    r = c.call("generate", {"prompt": "The capital of France is", "n_predict": 4})
    assert isinstance(r["text"], str)

    r = c.call("train_start", {"steps": 1000})
    assert r["max_steps"] == 1000 and r["profile"] == "alice"
    with pytest.raises(RPCError) as e:
        c.call("train_start", {"steps": 1})
    assert e.value.code == 1003
    r = c.call("train_stop")
    assert r["was_training"] and r["profile"] == "alice"
    assert r["checkpoint_step"] == r["step"]  # a stop checkpoints the step it finished

    r = c.call("save_adapter")
    assert os.path.exists(r["path"]) and r["path"].endswith("alice/adapter.gguf")
    out = tmp / "export.gguf"
    r = c.call("export_adapter", {"path": str(out), "which": "best"})
    assert out.stat().st_size > 0
    c.close()


def test_train_start_needs_examples(daemon):
    with pytest.raises(RPCError) as e:
        daemon.call("train_start", {"steps": 1})
    assert e.value.code == 1004


@pytest.mark.parametrize("line,code", [
    (b"this is not json", -32700),
    (b'{"id": 1, "method": "status"', -32700),
    (b"[1, 2, 3]", -32600),
    (b'{"id": 1}', -32600),
    (b'{"id": [1], "method": "status"}', -32600),
    (b'{"id": 1, "method": "status", "extra": 1}', -32600),
    (b'{"id": 1, "method": "status", "params": [1]}', -32602),
    (b'{"id": 1, "method": "no_such_method"}', -32601),
    (b'{"id": 1, "method": "status", "params": {"bogus": 1}}', -32602),
    (b'{"id": 1, "method": "add_examples", "params": {"examples": []}}', -32602),
    (b'{"id": 1, "method": "add_examples", "params": {"examples": [1]}}', -32602),
    (b'{"id": 1, "method": "add_examples", "params": {"examples": [{"x": 1}]}}', -32602),
    (b'{"id": 1, "method": "add_examples", "params": {"examples": [{"sentence": "a"}], "split": "test"}}', -32602),
    (b'{"id": 1, "method": "classify", "params": {"prompt": "a", "labels": "x"}}', -32602),
    (b'{"id": 1, "method": "generate", "params": {"prompt": "a", "n_predict": 100000}}', -32602),
    (b'{"id": 1, "method": "select_profile", "params": {"name": "../../etc"}}', -32602),
    (b'{"id": 1, "method": "export_adapter", "params": {"path": "relative.gguf"}}', -32602),
    (b'{"id": 1, "method": "status", "params": {"profile": "nobody"}}', 1002),
])
def test_bad_requests_get_errors_and_the_connection_goes_on(daemon, line, code):
    c = daemon.client()
    c.send_raw(line + b"\n")
    reply = c.read_reply()
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    assert c.call("status")["profile"]["name"] == "default"  # same connection still served
    c.close()


def test_error_reply_keeps_the_id(daemon):
    c = daemon.client()
    c.send_raw(b'{"id": "abc", "method": "nope"}\n')
    assert c.read_reply()["id"] == "abc"
    c.close()


def test_oversized_request(daemon):
    limit = daemon.config["limits"]["max_request_bytes"]
    c, other = daemon.client(), daemon.client()
    # One line far over the limit, sent in pieces, then a good request on the same connection.
    big = json.dumps({"id": 7, "method": "add_examples",
                      "params": {"examples": [{"sentence": "x" * (4 * limit), "label": 1}]}}).encode()
    for i in range(0, len(big), 8192):
        c.send_raw(big[i:i + 8192])
    c.send_raw(b"\n")
    reply = c.read_reply()
    assert reply["error"]["code"] == 1001 and reply["id"] is None
    assert other.call("status")["clients"] == 2  # others were served meanwhile
    assert c.call("status")["profile"]["n_train"] == 0  # nothing of it was added
    c.close()
    other.close()


def test_pipelined_requests_answered_in_order(daemon):
    c = daemon.client()
    reqs = [{"id": i, "method": m, "params": p} for i, (m, p) in enumerate([
        ("add_examples", {"examples": [example(1)]}),
        ("status", {}),
        ("classify", {"prompt": "fine It was", "labels": LABELS}),
        ("status", {}),
        ("add_examples", {"examples": [example(2)]}),
        ("list_profiles", {}),
    ])]
    c.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
    replies = [c.read_reply() for _ in reqs]
    assert [r["id"] for r in replies] == list(range(len(reqs)))
    assert replies[1]["result"]["profile"]["n_train"] == 1  # status saw the add before it
    assert replies[4]["result"]["n_train"] == 2
    c.close()


def test_blank_lines_and_crlf(daemon):
    c = daemon.client()
    c.send_raw(b'\n\r\n  \n{"id": 1, "method": "status"}\r\n')
    assert c.read_reply()["id"] == 1
    c.close()


def test_client_gone_mid_request_does_not_hurt(daemon):
    for _ in range(5):
        c = daemon.client()
        c.send_raw(b'{"id": 1, "method": "generate", "params": {"prompt": "Hello", "n_predict": 8}}\n')
        c.close()
    assert daemon.call("status")["training"]["state"] == "idle"


def test_max_clients(make_daemon):
    d = make_daemon(limits={"max_clients": 2}).start()
    a, b = d.client(), d.client()
    a.call("status"), b.call("status")
    c = d.client()
    reply = c.read_reply()
    assert reply["error"]["code"] == 1007
    a.close()
    b.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_peer_uid_checked(daemon):
    # Let anyone reach the socket file, so only the SO_PEERCRED check can refuse.
    os.chmod(daemon.socket_path.parent, 0o711)
    os.chmod(daemon.socket_path, 0o666)
    code = ("import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)\n"
            "try:\n"
            "    s.sendall(b'{\"id\": 1, \"method\": \"status\"}\\n'); got = s.recv(100)\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    got = b''\n"
            "print('closed' if got == b'' else got)\n")
    out = subprocess.run([sys.executable, "-c", code, str(daemon.socket_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "closed", out  # no answer at all
    assert "refused a connection from uid 65534" in daemon.log_text()


def test_shutdown_method(daemon):
    assert daemon.call("shutdown") == {"stopping": True}
    assert daemon.proc.wait(timeout=30) == 0
    assert not daemon.socket_path.exists()


def test_second_daemon_on_same_socket_refused(daemon, tmp):
    cfg = {**daemon.config, "state_dir": str(tmp / "state2")}
    path = tmp / "second.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(PRGED), str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "another daemon" in p.stderr
    assert daemon.call("status")["clients"] == 1


def test_second_daemon_on_same_state_dir_refused(daemon, tmp):
    cfg = {**daemon.config, "socket": str(tmp / "second.sock")}
    path = tmp / "second.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(PRGED), str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "another prged uses this state_dir" in p.stderr
