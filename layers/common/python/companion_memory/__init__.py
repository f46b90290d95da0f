"""Companion Memory: the code shared by every Lambda function (the common layer)."""
