"""`twostream export` as it calibrated before issue 12 point 6: int8 calibration windows drawn from the
whole extraction (validation videos included). Only for the before/after measurement in this folder.

usage: python benchmarks/issue12/export_precalibration_fix.py SPATIAL TEMPORAL OUT_DIR --quantize int8
"""
import argparse
import sys

import train.cmd_export as cmd_export

cmd_export.calibration_videos = lambda extracted, metas: (None, f"all videos of {extracted} (pre-fix behaviour)")
parser = argparse.ArgumentParser()
cmd_export.configure(parser)
sys.exit(cmd_export.main(parser.parse_args(sys.argv[1:])))
