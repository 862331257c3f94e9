"""Write lifelines' lung, rossi and larynx data to CSV so R and Python read identical rows.

Run from the repository root:  .venv/bin/python tests/reference/export_datasets.py

Columns are exactly lifelines' (nothing dropped or recoded). In lifelines'
``load_lung`` ``status`` is already 0/1 (1 = death; R's ``survival::lung`` codes it
1/2). Missing values are written as empty fields (R's ``read.csv`` reads them as NA):
lung has NaN in inst (1), ph.ecog (1), ph.karno (1), pat.karno (3), meal.cal (47),
wt.loss (14); none in time, status or sex. rossi and larynx have no missing values
(larynx: time in years, death 0/1, stage one-hot in Stage_II..Stage_IV).
"""

from pathlib import Path

from lifelines.datasets import load_larynx, load_lung, load_rossi

HERE = Path(__file__).parent

loaders = {"lung": load_lung, "rossi": load_rossi, "larynx": load_larynx}
for name, loader in loaders.items():
    frame = loader()
    frame.to_csv(HERE / f"{name}.csv", index=False)
    missing = frame.isna().sum()
    print(
        f"{name}.csv: {len(frame)} rows, columns {list(frame.columns)}, "
        f"NaN {missing[missing > 0].to_dict()}"
    )
