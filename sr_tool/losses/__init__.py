"""Losses: pure tensor modules that know nothing of training frameworks or the CLI."""
