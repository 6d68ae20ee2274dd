"""Shipped srtool models: <name>_x<scale>.onnx with a JSON card beside each (installed as sr_tool.shipped)."""
