"""Options in, checked: wrong types in a config file, options a resumed run cannot change, misspelt callbacks."""

import pytest

import deepcat
from deepcat.cli import main
from deepcat.errors import DeepcatError


@pytest.mark.parametrize(
    "line, message",
    [
        ("epochs: ten", "epochs in {cfg} must be a whole number or null; received 'ten'"),
        ("lr: [0.1, 0.2]", "lr in {cfg} must be a number or null; received [0.1, 0.2]"),
        ("channels_last: maybe", "channels_last in {cfg} must be true or false; received 'maybe'"),
        ("batch_size: 3.5", "batch_size in {cfg} must be a whole number or null; received 3.5"),
        ("schedule: linear", "schedule must be one of onecycle, cosine; received 'linear'"),
    ],
)
def test_a_wrong_value_in_a_config_file_is_one_line_and_exit_2(tmp_path, capsys, line, message):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(line + "\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message.format(cfg=cfg) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_int_is_a_valid_float(tmp_path):
    from deepcat.config import resolve_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr: 1\nmixup: 0\n")
    resolved = resolve_config(config_file=cfg)
    assert resolved.lr == 1.0 and isinstance(resolved.lr, float)


def test_a_resumed_run_refuses_an_option_it_cannot_change(tmp_path, capsys):
    run = deepcat.train("digits", output=str(tmp_path), name="r", epochs=1, batch_size=64, audit=False, progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "cannot change lr=0.01 (run has 0.1)" in err and "epochs" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DeepcatError, match="cannot change"):
        deepcat.train(resume=run, lr=0.01, progress=False)
    resumed = deepcat.train(resume=run, epochs=2, data="digits", progress=False)  # same value: not a change
    assert len((resumed / "metrics.csv").read_text().splitlines()) == 3


def test_a_misspelt_callback_method_is_an_error_naming_the_events(tmp_path):
    class Typo:
        def on_epoch_ended(self, **_):
            pass

    with pytest.raises(DeepcatError, match="on_epoch_ended is not a training event.*Did you mean: on_epoch_end"):
        deepcat.train("digits", output=str(tmp_path), name="t", epochs=1, callbacks=[Typo()], progress=False)
