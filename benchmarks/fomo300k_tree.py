"""A FOMO300K-layout tree of tiny but valid scans, shaped like the real corpus, for the scale benchmarks.

36 PT source folders with FOMO300K's scans per source (v1.1 counts as quoted from the dataset card's
per-source table), PT030_OpenNeuro split into `ds*` folders (~880 at full size), 5.2 scans per subject
and 1.4 sessions per subject (306,207 scans of 58,741 subjects in 81,195 sessions), BIDS file names
(`anat/sub-XXXX_ses-YY_T1w.nii.gz`, `dwi/..._dwi_bval1000.nii.gz`, `undefined/..._scan.nii.gz`), one
session in `--zip-every` shipped as `ses-YY.zip`, and the three metadata tables at the root with the
organisers' column names (participants.tsv per session, mri_info.tsv and mapping.tsv per scan).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from bench_fomo60k_convert import tiny_nifti_bytes

SOURCES = (  # (folder, scans in FOMO300K v1.1)
    ("PT001_ClevelandCCF", 31), ("PT002_NigerianClinical", 701), ("PT003_CUNMET", 173), ("PT004_ACPI", 163),
    ("PT005_ADHD200", 973), ("PT006_AHEAD", 420), ("PT007_ATAG", 583), ("PT008_AdolescentBrainDev", 905),
    ("PT009_BraTSGEN", 10448), ("PT010_BrainLat", 2211), ("PT011_CFMM7T", 160), ("PT012_CHBMP", 901),
    ("PT013_CalgaryPreschool", 1629), ("PT014_CoRR", 5831), ("PT015_MSDBrainTumor", 3000), ("PT016_GSP", 1708),
    ("PT017_HBNSSI", 1031), ("PT018_HBN", 26097), ("PT019_HCPTestRetest", 1460), ("PT020_HCPWuMinn", 38311),
    ("PT021_IXI", 3105), ("PT022_BeijingEnhanced", 540), ("PT023_InfantDevBrain", 1666), ("PT024_M4Raw", 2230),
    ("PT025_ageility", 1179), ("PT026_MICAMICs", 649), ("PT027_NKI", 10658), ("PT028_OASIS1", 1688),
    ("PT029_OASIS2", 2113), ("PT030_OpenNeuro", 140389), ("PT031_SLIM", 3096), ("PT032_TaoWu", 40),
    ("PT033_WAND", 7132), ("PT034_Wayne", 610), ("PT035_YaleBrainMets", 33800), ("PT036_YaleHighRes", 576))
FULL_SIZE = sum(n for _, n in SOURCES)  # 306,207
OPENNEURO_DATASETS = 880
SCANS = (("anat", "T1w"), ("anat", "T2w"), ("anat", "FLAIR"), ("dwi", "dwi_bval1000"), ("undefined", "scan"),
         ("anat", "run-2_T1w"))
VENDORS = ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems", "")
FIELDS = ("3", "1.5", "15000", "2.89362", "")


def _source_counts(n_scans: int) -> list[tuple[str, int]]:
    """Scans per source, FOMO300K's proportions scaled to n_scans (largest remainder; every source >= 1)."""
    raw = [(name, count * n_scans / FULL_SIZE) for name, count in SOURCES]
    counts = [(name, max(1, int(share))) for name, share in raw]
    short = n_scans - sum(c for _, c in counts)
    order = sorted(range(len(raw)), key=lambda i: raw[i][1] - int(raw[i][1]), reverse=True)
    for i in order[:max(short, 0)]:
        counts[i] = (counts[i][0], counts[i][1] + 1)
    while sum(c for _, c in counts) > n_scans:  # tiny corpora: take from the largest
        i = max(range(len(counts)), key=lambda k: counts[k][1])
        counts[i] = (counts[i][0], counts[i][1] - 1)
    return counts


def _source_folders(n_scans: int) -> list[tuple[str, int]]:
    """(relative source folder, scans); OpenNeuro split into ds folders in proportion to the corpus size."""
    folders = []
    for name, count in _source_counts(n_scans):
        if name != "PT030_OpenNeuro":
            folders.append((name, count))
            continue
        parts = max(1, min(count, round(OPENNEURO_DATASETS * n_scans / FULL_SIZE)))
        for k in range(parts):
            share = count // parts + (k < count % parts)
            folders.append((f"{name}/ds{k + 1:06d}", share))
    return [(f, c) for f, c in folders if c > 0]


def build_fomo300k_tree(root: Path, n_scans: int, zip_every: int = 8) -> tuple[int, int, int, int]:
    """Write the tree; returns (scans, subjects, sessions, zipped sessions)."""
    payloads = [tiny_nifti_bytes(seed) for seed in range(16)]
    participants = [("dataset", "participant_id", "session_id", "age", "sex")]
    mri_info = [("dataset", "participant_id", "session_id", "filename", "Modality", "MagneticFieldStrength",
                 "Manufacturer")]
    mapping = [("dataset", "old_path", "new_path", "old_filename", "new_filename", "participant_id", "session_id",
                "modality")]
    written = subjects = sessions = zipped = 0
    for folder, count in _source_folders(n_scans):
        done, subject = 0, 0
        while done < count:
            subject += 1
            subjects += 1
            sub = f"sub-{subject:04d}"
            for session in range(1, 2 + (subjects % 5 < 2)):  # 1.4 sessions per subject
                ses = f"ses-{session:02d}"
                sessions += 1
                files = {}
                for k in range(min(3 + (subjects + session) % 2 + (subjects % 7 == 0), count - done)):
                    modality, suffix = SCANS[k]
                    name = f"{sub}_{ses}_{suffix}.nii.gz"
                    files[f"{modality}/{name}"] = payloads[written % len(payloads)]
                    relative = f"{sub}/{ses}/{modality}/{name}"
                    mri_info.append((folder, sub, ses, relative, "MR", FIELDS[written % len(FIELDS)],
                                     VENDORS[written % len(VENDORS)]))
                    mapping.append((folder, f"orig/{written}.nii.gz", relative, f"{written}.nii.gz", name, sub, ses,
                                    modality))
                    written += 1
                    done += 1
                participants.append((folder, sub, ses, str(20 + subjects % 60), "MF"[subjects % 2]))
                base = root / folder / sub
                if sessions % zip_every == 0:
                    base.mkdir(parents=True, exist_ok=True)
                    with zipfile.ZipFile(base / f"{ses}.zip", "w", zipfile.ZIP_STORED) as archive:
                        for member, payload in files.items():
                            archive.writestr(f"{ses}/{member}", payload)
                    zipped += 1
                else:
                    for member, payload in files.items():
                        path = base / ses / member
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(payload)
                if done >= count:
                    break
    for name, rows in (("participants.tsv", participants), ("mri_info.tsv", mri_info), ("mapping.tsv", mapping)):
        (root / name).write_text("\n".join("\t".join(row) for row in rows) + "\n")
    return written, subjects, sessions, zipped
