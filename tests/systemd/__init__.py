"""Tests against a real systemd: a private `systemd --user` manager per test (see usermanager)."""
