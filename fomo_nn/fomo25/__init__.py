"""The FOMO25 challenge's own rules, in one place for conversion, inference and the demo.

- `tasks`: per task its channels (which sequences feed each), label file and kind, target range and
  what the challenge container writes;
- `sequences`: which sequence serves a channel (the merged `swi_or_t2s` takes SWI, else T2*);
- `layout`: where things are in the FOMO60K corpus and the finetuning task folders (no image is read).

It knows only `fomo_nn.io` and `fomo_nn.tasks`; the converters (`dataset_conversion`) build on it, never the other way round.
"""
