"""spawners."""
