"""metrics.jsonl after faults: a resume after a kill logs every step once and in order, a torn last line is
dropped, and read_metrics skips (and reports) a line that is no record instead of failing."""

import json

import pytest

from fastreg.train.config import TrainConfig
from fastreg.train.metrics_log import read_metrics
from fastreg.train.trainer import resume, train
from test_resume import crash_at

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(data="ring8", model="mlp", z_dim=4, batch_size=8, sample_every=1000, ema=0.9)


def test_resume_after_a_kill_between_checkpoints_logs_each_step_once(tmp_path, monkeypatch):
    """Killed before step 17 (steps 15 logged, last checkpoint at 10); a torn line from the dying writer.
    On main the resumed log read 5, 10, 15, 15, 20 (and the torn line made every reader fail)."""
    config = TrainConfig(**TOY, steps=20, checkpoint_every=10, log_every=5, out=str(tmp_path / "run"))
    with monkeypatch.context() as patch:
        crash_at(patch, 16)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    log = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [5, 10, 15]
    with open(log, "a") as f:
        f.write('{"step": 16, "d_lo')  # a write cut off by a full disk or the kill
    resume(config.out)
    steps = [r["step"] for r in read_metrics(config.out)]
    assert steps == [5, 10, 15, 20]
    assert log.read_text().endswith("\n")


def test_read_metrics_skips_and_reports_a_bad_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "d_loss": 0.5}\n{"step": 2, "d_lo\n[1, 2]\n'
                                            '{"step": 3, "d_loss": 0.25}\n')
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: skipped 2 unreadable line\(s\) \(line 2: .*line 3: "):
        records = read_metrics(str(tmp_path))
    assert records == [{"step": 1, "d_loss": 0.5}, {"step": 3, "d_loss": 0.25}]


def test_truncate_keeps_whole_records_up_to_the_step(tmp_path):
    from fastreg.train.metrics_log import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "x": s / 2}) for s in (5, 10, 10, 15)] + ['{"step": 20, "x']
    path.write_text("\n".join(lines))
    assert truncate_metrics(str(path), 10) == 2
    assert path.read_text() == "".join(line + "\n" for line in lines[:3])
    assert truncate_metrics(str(path), 10) == 0
