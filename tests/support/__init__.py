"""Helpers shared by tests: real mounts under ``fusetrace record``, test trees and daemons."""
