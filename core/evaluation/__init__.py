"""Scoring prompt versions against ground truth: metrics per control type and version comparison."""
