"""`bench describe` and describe_model: parameter counts from a model built on the meta device."""
from bench.cli import main
from generators.trainable import describe_model, get_trainable


def test_meta_counts_equal_a_real_build():
    for name in ("archisound", "discodiff", "srcgaudio", "diffsound"):
        trainable = get_trainable(name)
        real = trainable.build(trainable.default_config("tiny"), 0)
        d = describe_model(name, "tiny")
        assert d.total == sum(p.numel() for p in real.parameters()) > 0, name
        child = next(iter(n for n, _ in real.named_children()))
        assert d.count(child) == sum(p.numel() for p in getattr(real, child).parameters())


def test_cli_prints_config_modules_and_a_total_line(capsys):
    assert main(["describe", "discodiff", "--depth", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    d = describe_model("discodiff", "tiny")
    assert out[-1].startswith("total ") and int(out[-1].split()[1].replace(",", "")) == d.total
    assert any(line.strip().startswith("primary ") for line in out)
    assert not any(line.strip().startswith("primary.") for line in out)  # depth 1: top-level modules only
    assert "  width = 64" in out


def test_unknown_generator_or_size_is_refused(capsys):
    assert main(["describe", "musicgen"]) == 2
    assert "not a trainable reference generator" in capsys.readouterr().err
    assert main(["describe", "discodiff", "--size", "huge"]) == 2
    assert "unknown size 'huge'" in capsys.readouterr().err

