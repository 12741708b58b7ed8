//! Divisions by declaration, and `repartition`: by `npartitions`, by
//! `partition_size` (bytes), by new `divisions`, and by a time frequency.
//! Repartitioning moves no more data than needed: it only slices and concatenates
//! neighbouring partitions, never shuffles, and keeps the index and (where they
//! can be) the divisions.

use datafusion_common::ScalarValue;

use super::plan::Index;
use super::DataFrame;
use crate::error::{Error, Result};

impl DataFrame {
    /// The same rows, declared indexed by `column` with these divisions
    /// (`npartitions + 1` sorted boundaries), as Dask's
    /// `set_index(column, sorted=True, divisions=...)`. Nothing is checked now;
    /// operations that rely on the divisions (`resample`, `rolling`,
    /// `repartition`) fail with an error naming the partition if a row lies
    /// outside its division range.
    pub fn with_known_divisions(
        &self,
        column: &str,
        divisions: Vec<ScalarValue>,
    ) -> Result<DataFrame> {
        crate::expr::column_type(&self.schema, column)?;
        if divisions.len() != self.npartitions() + 1 {
            return Err(Error::plan(
                "with_known_divisions",
                format!(
                    "{} partitions need {} divisions, got {}",
                    self.npartitions(),
                    self.npartitions() + 1,
                    divisions.len()
                ),
            ));
        }
        if divisions
            .windows(2)
            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less) && w[0] != w[1])
        {
            return Err(Error::plan(
                "with_known_divisions",
                "the divisions are not sorted",
            ));
        }
        Ok(self.with_index(Index {
            column: column.to_string(),
            divisions: Some(divisions.into()),
        }))
    }
}
