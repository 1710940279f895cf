"""Durability: kill -9 at random moments (during add_examples, during training) and restart;
nothing acknowledged may be lost. SIGTERM finishes the step, checkpoints and exits 0."""
import random
import signal
import threading
import time

from conftest import LABELS, example, read_journal

KILLS_DURING_ADD = 6
KILLS_DURING_TRAINING = 4


def writer(daemon, tag, acked, stop, pause=0.0):
    """Adds examples one batch at a time, remembering those the daemon acknowledged."""
    try:
        c = daemon.client(timeout=30)
        n = 0
        while not stop.is_set():
            batch = [{"sentence": f"{tag}-{n}-{k}", "label": k % 2} for k in range(3)]
            c.call("add_examples", {"examples": batch})
            acked.extend(e["sentence"] for e in batch)  # only after the reply
            n += 1
            time.sleep(pause)
    except (ConnectionError, OSError, ValueError):
        pass  # the daemon was killed under us


def test_kill9_during_add_examples(make_daemon):
    d = make_daemon()
    rng = random.Random(5)
    acked = []
    journal = None
    for kill in range(KILLS_DURING_ADD):
        d.start()
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(d, f"k{kill}w{w}", acked, stop)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        d.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        # Restart: every acknowledged example is back, and the daemon holds exactly the journal.
        d.start()
        journal = d.profile_dir / "default/journal"
        records, end = read_journal(journal)
        on_disk = [e["sentence"] for _, batch in records for e in batch]
        assert end == journal.stat().st_size  # a torn tail was cut at restart
        missing = set(acked) - set(on_disk)
        assert not missing, f"kill {kill + 1}: {len(missing)} acknowledged examples lost"
        assert len(on_disk) == len(set(on_disk))
        s = d.call("status")
        assert s["profile"]["n_train"] == len(on_disk) >= len(acked)
        d.terminate()
    assert len(acked) > 100, "too few examples were acknowledged for the test to mean much"
    print(f"\n{KILLS_DURING_ADD} kills during add_examples: {len(acked)} acknowledged examples, none lost")


def test_kill9_during_training(make_daemon):
    """Examples keep arriving while training runs, so checkpoints are taken at moving journal
    offsets: a restart must still resume the newest one and replay the rest."""
    d = make_daemon(training={"checkpoint_every_s": 0.3})
    rng = random.Random(7)
    d.start()
    d.call("add_examples", {"examples": [example(i) for i in range(8)]})
    d.terminate()
    acked = []
    for kill in range(KILLS_DURING_TRAINING):
        d.start()
        c = d.client()
        start_step = c.call("status")["profile"]["step"]
        c.call("train_start", {"steps": 100000})
        stop = threading.Event()
        w = threading.Thread(target=writer, args=(d, f"t{kill}", acked, stop, 0.01))
        w.start()
        # Train until a new checkpoint is on disk, then a random while longer: the kill lands
        # in a step, in a checkpoint write or in between.
        deadline = time.monotonic() + 120
        while (seen := c.call("status")["profile"])["checkpoint_step"] <= start_step:
            assert time.monotonic() < deadline, "no checkpoint in 120 s"
            time.sleep(0.02)
        deadline = time.monotonic() + rng.uniform(0.0, 1.5)
        while time.monotonic() < deadline:
            seen = c.call("status")["profile"]
            time.sleep(0.02)
        c.close()
        d.kill9()
        stop.set()
        w.join(timeout=30)
        d.start()
        s = d.call("status")["profile"]
        # The restart resumes from the newest checkpoint: at least the one we last saw...
        assert s["step"] == s["checkpoint_step"] >= seen["checkpoint_step"] > start_step, (seen, s)
        assert s["step"] <= seen["step"] + 5  # ...and no further than what had been trained
        files = sorted(f.name for f in (d.profile_dir / "default").iterdir())
        assert len([f for f in files if f.startswith("checkpoint-")]) == 1, files
        assert not [f for f in files if ".tmp-" in f], files  # a torn checkpoint write is cleaned
        records, _ = read_journal(d.profile_dir / "default/journal")
        on_disk = [e["sentence"] for _, batch in records for e in batch]
        assert not set(acked) - set(on_disk)
        assert s["n_train"] == len(on_disk) >= 8 + len(acked)
        r = d.call("classify", {"prompt": "a wonderful film It was", "labels": LABELS})
        assert r["label"] in LABELS
        d.terminate()
    print(f"\n{KILLS_DURING_TRAINING} kills during training ({len(acked)} examples added meanwhile, none "
          f"lost): each restart resumed the newest checkpoint; final step {s['step']}")


def test_sigterm_finishes_step_checkpoints_and_exits_0(make_daemon):
    d = make_daemon(training={"checkpoint_every_s": 1000})  # only the stop checkpoints
    d.start()
    c = d.client()
    c.call("add_examples", {"examples": [example(i) for i in range(4)]})
    c.call("train_start", {"steps": 100000})
    deadline = time.monotonic() + 60
    while (step := c.call("status")["profile"]["step"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert d.terminate(signal.SIGTERM) == 0
    assert "stopped cleanly" in d.log_text()
    assert not d.socket_path.exists()
    d.start()
    s = d.call("status")["profile"]
    assert s["step"] == s["checkpoint_step"] >= step  # nothing trained was lost
    assert d.terminate(signal.SIGINT) == 0


def test_torn_journal_tail_is_cut(make_daemon):
    d = make_daemon().start()
    d.call("add_examples", {"examples": [example(i) for i in range(3)]})
    d.call("add_examples", {"examples": [example(i) for i in range(3, 5)]})
    assert d.terminate() == 0
    journal = d.profile_dir / "default/journal"
    good_size = journal.stat().st_size
    # A record header promising 100 bytes followed by 10: what a crash mid-write leaves.
    with open(journal, "ab") as f:
        f.write((100).to_bytes(4, "little") + b"\0\0\0\0" + b"x" * 10)
    # And what a kill during the library's atomic write leaves: its temporary file.
    stale = d.profile_dir / "default/adapter.gguf.tmp-12345"
    stale.write_bytes(b"half a file")
    d.start()
    assert not stale.exists()
    assert d.call("status")["profile"]["n_train"] == 5
    assert journal.stat().st_size == good_size
    assert "dropping 18 bytes" in d.log_text()
    # A complete last record with a bad CRC is dropped the same way.
    d.call("add_examples", {"examples": [example(9)]})
    assert d.terminate() == 0
    data = bytearray(journal.read_bytes())
    data[-2] ^= 0xFF
    journal.write_bytes(bytes(data))
    d.start()
    assert d.call("status")["profile"]["n_train"] == 5
    records, end = read_journal(journal)
    assert len(records) == 2 and end == good_size


def test_unresumable_checkpoint_refuses_to_start(make_daemon):
    """Changed trainer options that move B differently: starting fresh would overwrite the
    user's adapter at the next checkpoint, so the daemon refuses and says why."""
    import subprocess
    d = make_daemon().start()
    d.call("add_examples", {"examples": [example(i) for i in range(2)]})
    d.call("train_start", {"steps": 1})
    deadline = time.monotonic() + 60
    while d.call("status")["profile"]["checkpoint_step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.terminate() == 0
    d.config["trainer"] = {**d.config["trainer"], "seed": 99}
    d.write_config()
    p = subprocess.run([str(d.proc.args[0]), str(d.config_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "checkpoint-" in p.stderr and "resume" in p.stderr, p.stderr
    assert len(list((d.profile_dir / "default").glob("checkpoint-*.gguf"))) == 1  # untouched
