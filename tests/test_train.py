"""The fine-tuning stage end to end: strategies, outputs, resume, overwrite guard, CLI, DDP."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import edgetl
from edgetl.training import precision, schedule, strategy
from edgetl.training.config import TrainConfig, load_config

from conftest import FAST, free_port, make_folder


def test_fine_tune_writes_every_output_and_learns(image_folder, tmp_path):
    m = edgetl.train(image_folder, tmp_path / "run", **{**FAST, "epochs": 5})
    out = tmp_path / "run" / "train"
    for name in ("model.safetensors", "config.json", "metrics.json", "curves.png", "train.log",
                 "split.json"):
        assert (out / name).is_file(), name
    assert not (out / "resume.safetensors").exists()
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("model", "img_size", "val", "test", "per_class", "confusion_matrix",
                "wall_seconds"):
        assert key in saved
    assert saved["test"]["n"] == 24 and saved["img_size"] == 32
    assert json.loads((out / "config.json").read_text())["unfreeze"] == 5   # as resolved
    assert m["test"]["top1"] >= 0.9, m["history"]
    assert sum(map(sum, saved["confusion_matrix"])) == 24
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        spec = json.loads(f.metadata()["edgetl.spec"])
    assert spec["labels"] == ["class0", "class1"] and spec["img_size"] == 32
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["feature-extract", "progressive", "full"])
def test_other_strategies_train(image_folder, tmp_path, name):
    m = edgetl.train(image_folder, tmp_path / name, **{**FAST, "strategy": name, "epochs": 4,
                                                       "lr": 1e-2 if name == "full" else 3e-3})
    assert m["strategy"] == name and m["test"]["top1"] >= 0.75, m["history"]
    progressive = 18 - strategy.units_trained(TrainConfig())   # the lowest unit it unfreezes
    assert m["cached_from_unit"] == {"feature-extract": 18, "progressive": progressive,
                                     "full": 0}[name]


def test_strategy_schedules():
    n = 18
    ft = TrainConfig(strategy="fine-tune", warmup_epochs=2, unfreeze=3)
    assert [strategy.trainable_from(ft, n, e) for e in range(4)] == [18, 18, 15, 15]
    pg = TrainConfig(strategy="progressive", warmup_epochs=1, unfreeze=3, progressive_every=2)
    assert [strategy.trainable_from(pg, n, e) for e in range(8)] == [18, 17, 17, 16, 16, 15,
                                                                     15, 15]
    assert not strategy.updates_bn(ft) and strategy.updates_bn(TrainConfig(weights="none"))
    # --unfreeze unset: the model's own (Lite2: its whole stride-32 stage, units 16-22 of 23)
    lite = {m: TrainConfig(model=f"efficientnet_lite{m}") for m in (0, 1, 2)}
    assert [strategy.cache_unit(lite[m], n) for m, n in ((0, 18), (1, 23), (2, 23))] == \
        [13, 18, 16]
    assert strategy.cache_unit(TrainConfig(model="efficientnet_lite2", unfreeze=5), 23) == 18
    assert load_config(model="efficientnet_lite2").unfreeze == 7     # recorded as resolved
    assert schedule.cosine(0, 100, 10) == pytest.approx(0.1)
    assert schedule.cosine(100, 100, 10) == pytest.approx(0.0)


def test_regularisation_options_run(image_folder, tmp_path):
    m = edgetl.train(image_folder, tmp_path / "run", **{**FAST, "mixup": 0.2, "cutmix": 1.0,
                                                        "class_weights": "balanced",
                                                        "label_smoothing": 0.0, "dropout": 0.5})
    assert m["epochs_run"] == 3


@pytest.mark.parametrize("update", [False, True])
def test_trained_units_keep_pretrained_batchnorm_stats_unless_asked(image_folder, tmp_path,
                                                                    update):
    m = edgetl.train(image_folder, tmp_path / "run", **{**FAST, "epochs": 1, "warmup_epochs": 0,
                                                        "train_bn_stats": update})
    trained = [f"features.{u}." for u in range(m["cached_from_unit"], 18)]
    pretrained, _ = edgetl.models.create_model("efficientnet_lite0", 2, "imagenet")
    before = pretrained.state_dict()
    with safe_open(str(tmp_path / "run/train/model.safetensors"), "pt") as f:
        stats = [k for k in f.keys() if k.startswith(tuple(trained)) and "running_" in k]
        same = [torch.equal(f.get_tensor(k), before[k]) for k in stats]
    assert stats and m["history"][0]["trainable_from_unit"] == m["cached_from_unit"] < 18
    assert not any(same) if update else all(same)


def test_early_stopping_keeps_the_best_epoch(image_folder, tmp_path):
    m = edgetl.train(image_folder, tmp_path / "run", **{**FAST, "epochs": 30, "patience": 2,
                                                        "lr": 3e-2})
    best = max(h["val_top1"] for h in m["history"])
    assert m["epochs_run"] < 30
    assert m["history"][m["best_epoch"] - 1]["val_top1"] == best
    assert m["val"]["top1"] == pytest.approx(best)


def test_existing_run_is_never_overwritten_silently(image_folder, tmp_path):
    edgetl.train(image_folder, tmp_path / "run", **FAST)
    before = (tmp_path / "run/train/model.safetensors").read_bytes()
    with pytest.raises(edgetl.RunError, match="--overwrite"):
        edgetl.train(image_folder, tmp_path / "run", **FAST)
    assert (tmp_path / "run/train/model.safetensors").read_bytes() == before
    edgetl.train(image_folder, tmp_path / "run", overwrite=True, **{**FAST, "seed": 3})
    assert (tmp_path / "run/train/model.safetensors").read_bytes() != before


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "edgetl", *map(str, args)],
                          capture_output=True, text=True, timeout=600, **kw)


def _fast_flags():
    return ["--img-size", "32", "--cache-views", "2", "--batch-size", "16", "--workers", "1"]


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    data = make_folder(tmp_path / "d", per_class=40)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "train", str(data), "--out",
                             str(run), "--epochs", "60", "--patience", "0", *_fast_flags()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = run / "train" / "resume.safetensors"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)   # SIGINT may be ignored when tests run in background
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in err
    assert not (run / "train" / "metrics.json").exists()
    res = _cli("train", data, "--out", run, "--resume")
    assert res.returncode == 0, res.stderr
    log = (run / "train" / "train.log").read_text()
    assert "resuming at epoch" in log
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 60 and metrics["img_size"] == 32


@pytest.mark.slow
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, image_folder):
    cases = [
        (["train", tmp_path / "nope", "--out", tmp_path / "r1"], "does not exist"),
        (["train", image_folder, "--out", tmp_path / "r2", "--model", "vgg"], "unknown model"),
        (["train", image_folder, "--out", tmp_path / "r3", "--strategy", "magic"],
         "unknown strategy"),
        (["train", image_folder, "--out", tmp_path / "r4", "--weights", tmp_path / "x.pt"],
         "--weights"),
        (["train", image_folder, "--out", tmp_path / "r5", "--resume"], "nothing to resume"),
    ]
    for args, message in cases:
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_config_file_and_options(tmp_path, image_folder):
    cfg = tmp_path / "train.toml"
    cfg.write_text('[train]\nepochs = 2\nimg_size = 32\ncache_views = 1\nbatch_size = 8\n'
                   'strategy = "feature-extract"\n')
    res = _cli("train", image_folder, "--out", tmp_path / "run", "--config", cfg, "--epochs", "1")
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "run/train/config.json").read_text())
    assert saved["epochs"] == 1 and saved["strategy"] == "feature-extract"
    assert "val" in res.stdout and "test" in res.stdout
    cfg.write_text("[train]\nepoch = 2\n")
    res = _cli("train", image_folder, "--out", tmp_path / "run2", "--config", cfg)
    assert res.returncode == 2 and "unknown setting(s) epoch" in res.stderr


def test_weights_from_a_checkpoint_and_a_foreign_checkpoint(image_folder, tmp_path):
    edgetl.train(image_folder, tmp_path / "a", **FAST)
    ckpt = tmp_path / "a/train/model.safetensors"
    m = edgetl.train(image_folder, tmp_path / "b", weights=str(ckpt), **FAST)
    assert m["test"]["top1"] >= 0.9
    three = make_folder(tmp_path / "three", classes=3)
    with pytest.raises(edgetl.ModelError, match="does not fit"):
        edgetl.train(three, tmp_path / "c", weights=str(ckpt), **FAST)
    with pytest.raises(edgetl.ModelError, match="--model efficientnet_lite0"):
        edgetl.train(image_folder, tmp_path / "d", weights=str(ckpt),
                     **{**FAST, "model": "mobilenet_v2"})


def test_ddp_two_processes_write_one_set_of_outputs(tmp_path):
    data = make_folder(tmp_path / "d", per_class=10)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), "-m", "edgetl", "train", str(data), "--out",
                          str(run), "--epochs", "3", *_fast_flags()],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = run / "train"
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["world_size"] == 2
    assert metrics["n"]["val"] == 20 and metrics["test"]["n"] == 20
    assert metrics["test"]["top1"] >= 0.75
    assert sorted(p.name for p in (out / "cache").iterdir()) == [
        "test.rank0of2.safetensors", "test.rank1of2.safetensors",
        "train.rank0of2.safetensors", "train.rank1of2.safetensors",
        "val.rank0of2.safetensors", "val.rank1of2.safetensors"]
    log = (out / "train.log").read_text()
    assert log.count("epoch 3/3") == 1


THIRD_PARTY = ("I0000", "W0000", "absl::InitializeLog", "[START]", "flatbuffer_export",
               "cpuinfo", "XNNPACK delegate", "torch/utils", "Warning")


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_on_the_embedded_digits(tmp_path, capfd):
    result = edgetl.demo(tmp_path / "demo", epochs=2, cache_views=1)
    printed = "".join(capfd.readouterr())
    noise = [ln for ln in printed.splitlines() if any(t in ln for t in THIRD_PARTY)]
    assert not noise, noise                    # converters and runtimes log to the stage logs
    assert "tflite-int8" in (tmp_path / "demo/export/export.log").read_text()
    m = result["train"]
    assert m["model"] == "efficientnet_lite0" and m["test"]["n"] > 200
    assert m["test"]["top1"] > 0.6
    assert len(list((tmp_path / "demo/data/digits").rglob("*.png"))) == 1797
    names = {a["name"] for a in result["export"]["artifacts"]}
    assert {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"} <= names
    report = result["bench"]
    from edgetl.benchmarking.targets import load_target
    profile = load_target("x86-cpu")               # ExecuTorch's optional rows: installed here
    assert report["target"]["name"] == "x86-cpu" and not profile.left_out
    checks = report["verdict"]["checks"]
    assert not [c["reason"] for c in checks if c["build"] == "export"]   # the export's gates
    assert [(c["build"], c["runtime"]) for c in report["verdict"]["checks"]] == \
        [(b.build, b.runtime) for b in profile.builds]
    assert all(r["status"] == "ok" for r in report["results"])
    assert (tmp_path / "demo/bench/report.md").is_file()
    from test_page import SECTIONS, open_in_chromium     # the demo's page, in a real browser
    seen = open_in_chromium(tmp_path / "demo" / "report.html", tmp_path)
    assert seen["rendered"] == list(SECTIONS) and seen["broken_images"] == 0, seen
    assert seen["console"] == [] and seen["requests"] == [], seen


def test_a_student_learns_from_a_teachers_logits_computed_once_per_cached_view(image_folder,
                                                                              tmp_path):
    """--teacher: a finished run's model scores every cached training view once; those logits
    sit in the cache beside the student's features and join the loss; a teacher of other
    classes, or one with MixUp, is one line before any work."""
    from edgetl.models import load_checkpoint
    from edgetl.training.transforms import eval_transform
    teacher = tmp_path / "teacher"
    edgetl.train(image_folder, teacher, **{**FAST, "epochs": 3})
    student = tmp_path / "student"
    m = edgetl.train(image_folder, student, **{**FAST, "epochs": 3, "teacher": str(teacher),
                                               "distill_weight": 0.7})
    assert m["test"]["top1"] >= 0.9, m["history"]
    saved = json.loads((student / "train" / "config.json").read_text())
    assert saved["teacher"] == str(teacher) and saved["distill_weight"] == 0.7
    with safe_open(str(student / "train" / "cache" / "train.safetensors"), "pt") as f:
        soft, feats = f.get_tensor("teacher"), f.get_tensor("features")
    assert soft.shape[:2] == feats.shape[:2] and soft.shape[2] == 2     # per image and view
    # view 0 is the eval crop: the teacher's logits there are its model's on those images
    model, spec, _ = load_checkpoint(teacher / "train" / "model.safetensors")
    split = json.loads((student / "train" / "split.json").read_text())
    from PIL import Image
    first = split["train"][0]
    path = first["path"] if isinstance(first, dict) else first[0]
    x = eval_transform(spec)(Image.open(os.path.join(split.get("root", ""), path))
                             .convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(soft[0, 0], model(x)[0], atol=1e-3)
    other = make_folder(tmp_path / "three", classes=3, per_class=8)
    with pytest.raises(edgetl.ConfigError, match="--teacher .*classes .* are not the student's"):
        edgetl.train(other, tmp_path / "s2", **{**FAST, "teacher": str(teacher)})
    with pytest.raises(edgetl.ConfigError, match="--teacher: distillation .* no MixUp"):
        edgetl.train(image_folder, tmp_path / "s3", **{**FAST, "teacher": str(teacher),
                                                       "mixup": 0.2})


def test_search_tries_recipes_within_its_budget_and_chooses_on_validation(image_folder,
                                                                         tmp_path, monkeypatch):
    """--search SECONDS: the given recipe is trial 1, more trials while the next fits in the
    budget; the winner is the highest validation top-1 (ties: the earlier trial), its weights
    are the checkpoint's, and every trial is recorded; no trial is handed the test split."""
    from edgetl.training import search, trial
    handed, real_run = [], trial.run           # the real trials, their inputs' keys noted
    monkeypatch.setattr(trial, "run", lambda cfg, inputs, *a: handed.append(sorted(inputs))
                        or real_run(cfg, inputs, *a))
    # short recipes, so that the 20 s budget holds several trials on a slow or busy CPU too
    monkeypatch.setattr(search, "SPACE", {**search.SPACE, "epochs": (2, 3)})
    m = edgetl.train(image_folder, tmp_path / "run", **{**FAST, "epochs": 2, "search": 20})
    record = json.loads((tmp_path / "run/train/search.json").read_text())
    trials = record["trials"]
    assert len(trials) >= 2 and handed == [["train", "val"]] * len(trials)
    assert record["test_split_read"] is False and record["rule"] == search.RULE
    assert trials[0]["settings"]["epochs"] == 2 and trials[0]["vs_trial_1"]["lost"] == 0
    assert record["seconds"] <= 20 + max(t["seconds"] for t in trials)
    best = max(t["val"]["top1"] for t in trials)
    chosen = trials[record["chosen"] - 1]
    assert chosen["val"]["top1"] == best and all(
        t["val"]["top1"] < best for t in trials[:record["chosen"] - 1])
    assert m["search"] == chosen["settings"] and m["val"]["top1"] == pytest.approx(best)
    assert m["epochs_run"] == chosen["epochs_run"]
    with pytest.raises(edgetl.ConfigError, match="--search .* --strategy full"):
        edgetl.train(image_folder, tmp_path / "full", **{**FAST, "strategy": "full",
                                                         "search": 10})


def test_training_steps_run_and_learn_in_the_precision_asked(image_folder, tmp_path):
    runs = {asked: edgetl.train(image_folder, tmp_path / asked, **{
        **FAST, "epochs": 5, "train_precision": asked}) for asked in ("fp32", "bf16")}
    for asked, m in runs.items():
        assert m["train_precision"] == {"ran": asked, "why": "asked for"}
        assert m["test"]["top1"] >= 0.9, m["history"]
    weights = {asked: load_file(str(tmp_path / asked / "train" / "model.safetensors"))
               for asked in runs}                  # two fp32 runs give equal tensors
    assert not all(torch.equal(weights["fp32"][k], weights["bf16"][k]) for k in weights["fp32"])
    auto = edgetl.train(image_folder, tmp_path / "auto", **{**FAST, "epochs": 1})
    assert auto["train_precision"]["ran"] == ("bf16" if precision.bf16_path() else "fp32")


def test_bf16_steps_keep_depthwise_convolutions_and_evaluation_fp32():
    from edgetl.models import create_model
    model, _ = create_model("efficientnet_lite0", 3, "none", 0.2)
    seen = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(
                name, ("depthwise" if m.groups > 1 else "dense", o.dtype)))
    x = torch.randn(2, 3, 64, 64)
    with precision.training_steps(model, "bf16"):
        assert model(x).dtype == torch.bfloat16
    assert set(seen.values()) == {("depthwise", torch.float32), ("dense", torch.bfloat16)}
    assert not any("forward" in vars(m) for m in model.modules())     # restored
    assert model(x).dtype == torch.float32
