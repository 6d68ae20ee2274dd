from sr_tool.cli import app

app(prog_name="srtool")
