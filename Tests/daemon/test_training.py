"""Background training: budgets, many clients answered while it runs, SIGHUP reload."""
import json
import signal
import threading
import time

from conftest import LABELS, RPCError, example


def wait_idle(client, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.call("status")
        if s["training"]["state"] == "idle":
            return s
        time.sleep(0.05)
    raise AssertionError("training did not stop")


def test_step_budget(daemon):
    c = daemon.client()
    c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    c.call("train_start", {"steps": 3})
    s = wait_idle(c)
    assert s["training"]["end_reason"] == "max_steps" and s["training"]["run_steps"] == 3
    assert s["profile"]["step"] == 3 and s["profile"]["checkpoint_step"] == 3
    assert s["profile"]["last_loss"] is not None
    assert len(list((daemon.profile_dir / "default").glob("checkpoint-*.gguf"))) == 1
    assert (daemon.profile_dir / "default/adapter.gguf").exists()
    c.close()


def test_time_budget_from_config_caps_the_request(make_daemon):
    d = make_daemon(training={"max_seconds": 1.0}).start()
    c = d.client()
    c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    r = c.call("train_start", {"seconds": 100})
    assert r["max_seconds"] == 1.0
    t0 = time.monotonic()
    s = wait_idle(c)
    assert s["training"]["end_reason"] == "max_seconds"
    assert time.monotonic() - t0 < 30
    c.close()


def test_many_clients_answered_during_training(daemon):
    c = daemon.client()
    c.call("add_examples", {"examples": [example(i) for i in range(8)]})
    c.call("train_start", {"steps": 100000})
    # 24 connections, 6 users: several connections share a profile, as a user's apps would.
    n_clients, n_users, rounds = 24, 6, 3
    answered, errors, running_seen = [0] * n_clients, [], []

    def user(i):
        try:
            u = daemon.client(timeout=120)
            u.call("select_profile", {"name": f"user{i % n_users}"})
            for r in range(rounds):
                s = u.call("status", {"profile": "default"})
                running_seen.append(s["training"]["state"] == "running")
                u.call("add_examples", {"examples": [example(100 * i + r)]})
                u.call("list_profiles")
                if i % 4 == 0:  # inference waits for the running step only
                    u.call("classify", {"prompt": "great It was", "labels": LABELS})
                answered[i] += 1
            assert u.call("status")["profile"]["n_train"] >= rounds
            u.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert answered == [rounds] * n_clients
    assert any(running_seen)
    s = c.call("status")
    assert s["training"]["state"] == "running" and s["profile"]["step"] > 0
    r = c.call("train_stop")
    assert r["was_training"] and r["checkpoint_step"] == r["step"]
    profiles = {p["name"]: p for p in c.call("list_profiles")["profiles"]}
    assert len(profiles) == n_users + 1
    assert all(profiles[f"user{u}"]["n_train"] == rounds * n_clients // n_users for u in range(n_users))
    c.close()


def test_rate_cap_and_sighup_reload(make_daemon):
    d = make_daemon(training={"steps_per_minute": 30}).start()  # one step per 2 s
    c = d.client()
    c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    c.call("train_start", {"seconds": 3})
    s = wait_idle(c)
    assert 1 <= s["training"]["run_steps"] <= 3, s["training"]

    d.config["training"]["steps_per_minute"] = 0
    d.config["log_level"] = "debug"
    d.write_config()
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while c.call("status")["budget"]["steps_per_minute"] != 0:
        assert time.monotonic() < deadline, "SIGHUP did not reload the budget"
        time.sleep(0.05)

    # A broken config on SIGHUP keeps the running one.
    d.config_path.write_text("{ not json")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config not reloaded" not in d.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.call("status")["budget"]["steps_per_minute"] == 0
    c.close()


def test_inference_uses_the_trained_adapter(daemon):
    c = daemon.client()
    prompt = "review 1: a wonderful film It was"
    before = c.call("classify", {"prompt": prompt, "labels": LABELS})["scores"]
    c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    c.call("train_start", {"steps": 2})
    wait_idle(c)
    after = c.call("classify", {"prompt": prompt, "labels": LABELS})["scores"]
    assert after != before  # the adapter moved, and classify sees it
    # Another profile still has a zero adapter: the base model's scores.
    c.call("select_profile", {"name": "fresh"})
    assert c.call("classify", {"prompt": prompt, "labels": LABELS})["scores"] == before
    c.close()


def test_train_stop_when_idle(daemon):
    r = daemon.call("train_stop")
    assert r["was_training"] is False


def test_train_error_budget_not_exceeded_by_request(make_daemon):
    d = make_daemon(training={"max_steps": 2}).start()
    c = d.client()
    c.call("add_examples", {"examples": [example(i) for i in range(2)]})
    assert c.call("train_start", {"steps": 50})["max_steps"] == 2
    assert wait_idle(c)["profile"]["step"] == 2
    try:
        c.call("train_start", {"profile": "nobody"})
    except RPCError as e:
        assert e.code == 1002
    c.close()
