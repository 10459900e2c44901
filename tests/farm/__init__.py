"""Tests of the mock provider farm, driven over real HTTP on loopback."""
