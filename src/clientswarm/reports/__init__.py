"""reports: summary.json, the terminal table and raw-sample exports."""

from clientswarm.reports.export import (
    read_samples,
    read_samples_jsonl,
    stream_samples,
    write_samples,
)
from clientswarm.reports.summary import read_summary, write_summary
from clientswarm.reports.table import render_summary

__all__ = [
    "read_samples",
    "read_samples_jsonl",
    "read_summary",
    "render_summary",
    "stream_samples",
    "write_samples",
    "write_summary",
]
