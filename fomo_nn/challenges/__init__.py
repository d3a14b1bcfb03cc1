"""The FOMO challenges' own rules, one home for every edition (FOMO25, FOMO26): conversion, inference,
evaluation, ranking, the container and the demo read them here.

- `edition`: what an edition and a challenge task are (dataclasses);
- `fomo25`, `fomo26`: the tables, each with its sources and commits; `registry`: lookup by (edition, number);
- `sequences`: which sequence serves a channel (the merged `swi_or_t2s` takes SWI, else T2*);
- `layout`: where things are in the FOMO60K corpus and the finetuning task folders (no image is read).

It knows only `fomo_nn.io` and `fomo_nn.tasks`; the converters (`dataset_conversion`) build on it, never the other way round.
"""
