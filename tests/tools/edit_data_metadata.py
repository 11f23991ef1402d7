"""edit_data_metadata.py IN OUT EDIT: copies checkpoint IN to OUT with its data-source metadata
changed (the tensors, and so the checksum, stay intact). EDIT is one of
  rename-column   the second input column of "gradc.scaling" renamed to 'volume'
  zero-scale      the target's scale set to 0
  bad-json        "gradc.scaling" cut to '{"method": "minmax"'
  method          the method set to "standard"
  vocab-unsorted  "gradc.vocabulary" with its first two characters swapped
  vocab-short     "gradc.vocabulary" cut to its first 2 characters."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

src, dst, edit = sys.argv[1:4]
tensors, meta = safetensors_io.load_with_metadata(src)
if edit in ("rename-column", "zero-scale", "method"):
    sc = json.loads(meta["gradc.scaling"])
    if edit == "rename-column":
        sc["columns"][1]["name"] = "volume"
    elif edit == "zero-scale":
        sc["target"]["scale"] = 0
    else:
        sc["method"] = "standard"
    meta["gradc.scaling"] = json.dumps(sc)
elif edit == "bad-json":
    meta["gradc.scaling"] = '{"method": "minmax"'
elif edit == "vocab-unsorted":
    v = meta["gradc.vocabulary"]
    meta["gradc.vocabulary"] = v[1] + v[0] + v[2:]
elif edit == "vocab-short":
    meta["gradc.vocabulary"] = meta["gradc.vocabulary"][:2]
else:
    sys.exit(f"unknown edit {edit}")
safetensors_io.save(dst, tensors, meta)
