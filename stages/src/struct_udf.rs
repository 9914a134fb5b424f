//! Scalar UDFs that compute several columns per row in one pass and return them as a struct
//! (the extract stage's `html_extract`, the filter stage's `annotate`), and the plan step
//! that spreads such a struct into top-level columns.
//!
//! The spread goes through `unnest`, its own plan node, so the function runs once per batch:
//! `get_field` per field would be merged into one projection that calls it once per field.

use datafusion::arrow::array::{ArrayRef, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, Column, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::{col, DataFrame};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What a struct-returning UDF computes.
pub trait StructFunction: fmt::Debug + Send + Sync + 'static {
    /// The function's SQL name.
    fn name(&self) -> &'static str;
    /// Its argument types, exactly.
    fn arg_types(&self) -> Vec<DataType>;
    /// The struct's fields. Every row gets a struct, so the struct itself is never null and
    /// non-null fields stay non-null once spread.
    fn fields(&self) -> Fields;
    /// The struct for one batch of arguments.
    fn compute(&self, args: &[ArrayRef]) -> DfResult<StructArray>;
    /// What distinguishes two instances (their settings), for plan equality.
    fn identity(&self) -> String;
}

/// A [`StructFunction`] as a DataFusion scalar UDF.
#[derive(Debug)]
pub struct StructUdf<F> {
    function: F,
    signature: Signature,
}

impl<F: StructFunction> StructUdf<F> {
    /// The UDF. Functions that count what they see into a shard report are `Volatile`, so
    /// the optimizer never duplicates or drops a call.
    pub fn udf(function: F, volatility: Volatility) -> ScalarUDF {
        let signature = Signature::exact(function.arg_types(), volatility);
        ScalarUDF::from(StructUdf {
            function,
            signature,
        })
    }
}

impl<F: StructFunction> PartialEq for StructUdf<F> {
    fn eq(&self, other: &Self) -> bool {
        self.function.identity() == other.function.identity()
    }
}

impl<F: StructFunction> Eq for StructUdf<F> {}

impl<F: StructFunction> Hash for StructUdf<F> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.identity().hash(state);
    }
}

impl<F: StructFunction> ScalarUDFImpl for StructUdf<F> {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(self.function.fields()))
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(
            self.function.name(),
            DataType::Struct(self.function.fields()),
            false,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let want = self.function.arg_types().len();
        if arrays.len() != want {
            return exec_err!(
                "{} takes {want} arguments, got {}",
                self.function.name(),
                arrays.len()
            );
        }
        Ok(ColumnarValue::Array(Arc::new(
            self.function.compute(&arrays)?,
        )))
    }
}

/// `df`'s columns `keep`, then `udf(args)` spread into one column per struct field (named as
/// the field), in field order.
pub fn spread(
    df: DataFrame,
    keep: &[&str],
    udf: &ScalarUDF,
    args: Vec<Expr>,
    fields: &Fields,
) -> DfResult<DataFrame> {
    const STRUCT: &str = "__struct";
    let mut first: Vec<Expr> = keep.iter().map(|c| col(*c)).collect();
    first.push(udf.call(args).alias(STRUCT));
    let df = df.select(first)?.unnest_columns(&[STRUCT])?;
    let mut out: Vec<Expr> = keep.iter().map(|c| col(*c)).collect();
    for f in fields.iter() {
        let column = Column::new_unqualified(format!("{STRUCT}.{}", f.name()));
        out.push(Expr::Column(column).alias(f.name()));
    }
    df.select(out)
}
