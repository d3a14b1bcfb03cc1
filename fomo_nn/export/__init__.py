"""Writing fomo_nn models in other frameworks' formats (a layer above inference: exports read trained
model folders through fomo_nn.inference and are called by thin CLIs)."""
