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
