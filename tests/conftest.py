import os
import sys

# The package lives under workflow/ (the Snakemake catalog layout), not installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflow"))
