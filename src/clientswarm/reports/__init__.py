"""reports: summary.json, the terminal table and raw-sample exports."""

from clientswarm.reports.export import (
    JsonlSampleWriter,
    ParquetSampleWriter,
    SampleWriter,
    open_sample_writer,
    read_samples,
    read_samples_jsonl,
)
from clientswarm.reports.summary import read_summary, write_summary
from clientswarm.reports.table import render_summary

__all__ = [
    "JsonlSampleWriter",
    "ParquetSampleWriter",
    "SampleWriter",
    "open_sample_writer",
    "read_samples",
    "read_samples_jsonl",
    "read_summary",
    "render_summary",
    "write_summary",
]
