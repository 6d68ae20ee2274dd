from typer.testing import CliRunner

from sr_tool import __version__
from sr_tool.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"srtool {__version__}"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "presets" in result.output


def test_presets_prints_parameter_counts():
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    assert "srresnet " in result.output and "1,546,435" in result.output


def test_every_option_of_every_command_says_what_it_does():
    import typer

    from sr_tool.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"srtool {name} {param.opts[0]} has no help line"


def test_train_help_states_the_defaults_training_uses():
    import re

    import typer

    from sr_tool.cli import app
    from sr_tool.training import TrainConfig

    fields = {"out": "out_dir", "learning_rate": "lr", "time_budget": "time_budget_s"}
    words = {"off": (False, 0.0, 0), "no": (False,), "yes": (True,), "random": (None,), "torchvision's, fetched once": (None,)}
    command = typer.main.get_command(app).commands["train"]
    checked = 0
    for param in command.params:
        match = re.search(r"\(default: ([^;)]+)", param.help or "") if param.param_type_name == "option" else None
        field = fields.get(param.name, param.name)
        if not match or not hasattr(TrainConfig, field):
            continue
        stated, actual = match[1], getattr(TrainConfig(), field)
        assert stated == str(actual) or actual in words.get(stated, ()), (param.name, stated, actual)
        checked += 1
    assert checked >= 20


def test_help_shows_value_names_not_type_markers():
    import re

    import typer
    from typer.testing import CliRunner

    from sr_tool.cli import app

    runner = CliRunner()
    for name, command in typer.main.get_command(app).commands.items():
        text = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output
        options = [line for line in text.splitlines() if re.search(r"│\s+(\*\s+)?--", line)]
        assert len(options) >= len([p for p in command.params if p.param_type_name == "option"]), name
        assert any("--help" in line for line in options), name  # Typer's own option is checked too
        arguments = [line for line in text.splitlines() if re.search(r"│\s+(\*\s+)?[A-Z]+\s", line)]
        assert len(arguments) >= len([p for p in command.params if p.param_type_name == "argument"]), name
        markers = [line.strip() for line in options + arguments if re.search(r"<(bool|str|int|float|list\[[a-z]+\])>", line)]
        assert not markers, (name, markers)
    upscale_help = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "200"}).output
    assert all(f"─ {panel} ─" in upscale_help for panel in ("Outputs", "Inputs", "Hardware"))


def test_models_table_stays_aligned_with_long_losses():
    from typer.testing import CliRunner

    from sr_tool.cli import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if line.split()[:1] and line.split()[0] in
            ("name", "pixel", "msssim", "perceptual", "photo")]  # fmt: skip
    assert len(rows) >= 2
    assert len({line.index("/") if "/" in line else line.index("file") for line in rows}) == 1  # one file column


def test_train_help_names_every_loss_term():
    import typer

    from sr_tool.cli import app
    from sr_tool.losses import LOSSES

    loss = next(p for p in typer.main.get_command(app).commands["train"].params if p.name == "loss")
    listed = loss.help.split("Terms:")[1].split("(default")[0]
    assert [t.strip() for t in listed.split(",")] == list(LOSSES)


def test_upscale_help_states_the_strengths_the_route_uses():
    import typer

    from sr_tool.cli import app
    from sr_tool.upscale import JPEG_STRENGTHS, NOISE_STRENGTHS, WEBP_STRENGTHS

    model = next(p for p in typer.main.get_command(app).commands["upscale"].params if p.name == "model")
    stated = model.help.split("JPEG quality (")[1].split(")")[0]  # "1 up to quality 65, 0.75 up to 82, ..."
    for (highest, strength), part in zip(JPEG_STRENGTHS, stated.split(", "), strict=True):
        assert part.startswith(f"{strength:g} ") and (str(highest) in part or highest == 100), part
    stated = model.help.split("WebP quality (")[1].split(")")[0].split(": ")[1]  # "0.75 up to 62, 0.5 up to 82, 0.25 above"
    for (highest, strength), part in zip(WEBP_STRENGTHS, stated.split(", "), strict=True):
        assert part.startswith(f"{strength:g} ") and (str(highest) in part or highest == 100), part
    stated = model.help.split("noise where that asks for more (")[1].split(", in 8-bit")[0]  # "0.5 from sigma 5, ..."
    assert stated.split(", ") == [f"{strength:g} from sigma {sigma:g}" for sigma, strength in NOISE_STRENGTHS]
