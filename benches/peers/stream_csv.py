"""Writes a DataFusion DataFrame to a CSV file batch by batch (pyarrow's CSV writer), so
an answer larger than memory is never gathered in Python. Shared by q_datafusion.py and
benches/memory/q_peer.py."""
import pyarrow.csv as pacsv


def write(df, path):
    writer = None
    with open(path, "wb") as f:
        for batch in df.execute_stream():
            rb = batch.to_pyarrow()
            if writer is None:
                writer = pacsv.CSVWriter(f, rb.schema)
            writer.write_batch(rb)
        if writer is not None:
            writer.close()
