"""Quality benchmark (issue 7): systems x datasets, ablations, sensitivity; writes docs/results.md."""
