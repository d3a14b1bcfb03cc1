import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # spin-waiting OpenMP threads thrash 2 shared cores
os.environ.setdefault("MPLBACKEND", "Agg")
