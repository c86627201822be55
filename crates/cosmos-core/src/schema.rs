//! Schemas for the types whose serde form is a string the derive cannot see: ids (a prefix
//! and a lowercase ULID) and weights (`vis=0.3,edge=0.4`).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::id::{BatchId, IdKind, InputSetId, PromptId, RunId};
use crate::weights::Weights;

fn text(description: &str, pattern: Option<String>, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .examples([serde_json::Value::from(example)])
        .into()
}

macro_rules! id_schema {
    ($name:ident, $kind:expr, $example:literal) => {
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                text(
                    concat!("A ", stringify!($name), ": a prefix and a lowercase ULID"),
                    Some(format!("^{}[0-9a-hjkmnp-tv-z]{{26}}$", $kind.prefix())),
                    $example,
                )
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

id_schema!(RunId, IdKind::Run, "rs_01jd0000000000000000000000");
id_schema!(PromptId, IdKind::Prompt, "ps_01jd0000000000000000000000");
id_schema!(
    InputSetId,
    IdKind::InputSet,
    "in_01jd0000000000000000000000"
);
id_schema!(BatchId, IdKind::Batch, "bt_01jd0000000000000000000000");

impl PartialSchema for Weights {
    fn schema() -> RefOr<Schema> {
        text(
            "Control weights as `modality=weight` pairs, comma-separated; empty: an equal share per control video",
            None,
            "vis=0.3,edge=0.4",
        )
    }
}

impl ToSchema for Weights {}
