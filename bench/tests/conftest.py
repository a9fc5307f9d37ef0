import sys
from pathlib import Path

# bench/summary.py and bench/perfsplit.py are plain modules beside run.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
