//! Load diagnostics: errors and warnings with Falco's codes and a source position.

use serde::Serialize;

/// Falco's load error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(clippy::enum_variant_names)]
pub enum ErrorCode {
    #[serde(rename = "LOAD_ERR_FILE_READ")]
    FileRead,
    #[serde(rename = "LOAD_ERR_YAML_PARSE")]
    YamlParse,
    #[serde(rename = "LOAD_ERR_YAML_VALIDATE")]
    YamlValidate,
    #[serde(rename = "LOAD_ERR_COMPILE_CONDITION")]
    CompileCondition,
    #[serde(rename = "LOAD_ERR_COMPILE_OUTPUT")]
    CompileOutput,
    #[serde(rename = "LOAD_ERR_VALIDATE")]
    Validate,
}

/// Falco's load warning codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WarningCode {
    #[serde(rename = "LOAD_UNKNOWN_SOURCE")]
    UnknownSource,
    #[serde(rename = "LOAD_NO_EVTTYPE")]
    NoEvttype,
    #[serde(rename = "LOAD_UNKNOWN_FILTER")]
    UnknownFilter,
    #[serde(rename = "LOAD_UNUSED_MACRO")]
    UnusedMacro,
    #[serde(rename = "LOAD_UNUSED_LIST")]
    UnusedList,
    #[serde(rename = "LOAD_UNKNOWN_ITEM")]
    UnknownItem,
    #[serde(rename = "LOAD_DEPRECATED_ITEM")]
    DeprecatedItem,
    #[serde(rename = "LOAD_APPEND_NO_VALUES")]
    AppendNoValues,
    #[serde(rename = "LOAD_EXCEPTION_NAME_NOT_UNIQUE")]
    ExceptionNameNotUnique,
    #[serde(rename = "LOAD_INVALID_MACRO_NAME")]
    InvalidMacroName,
    #[serde(rename = "LOAD_INVALID_LIST_NAME")]
    InvalidListName,
    #[serde(rename = "LOAD_COMPILE_CONDITION")]
    CompileCondition,
    #[serde(rename = "LOAD_UNKNOWN_KEY")]
    UnknownKey,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FileRead => "LOAD_ERR_FILE_READ",
            ErrorCode::YamlParse => "LOAD_ERR_YAML_PARSE",
            ErrorCode::YamlValidate => "LOAD_ERR_YAML_VALIDATE",
            ErrorCode::CompileCondition => "LOAD_ERR_COMPILE_CONDITION",
            ErrorCode::CompileOutput => "LOAD_ERR_COMPILE_OUTPUT",
            ErrorCode::Validate => "LOAD_ERR_VALIDATE",
        }
    }
}

impl WarningCode {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::UnknownSource => "LOAD_UNKNOWN_SOURCE",
            WarningCode::NoEvttype => "LOAD_NO_EVTTYPE",
            WarningCode::UnknownFilter => "LOAD_UNKNOWN_FILTER",
            WarningCode::UnusedMacro => "LOAD_UNUSED_MACRO",
            WarningCode::UnusedList => "LOAD_UNUSED_LIST",
            WarningCode::UnknownItem => "LOAD_UNKNOWN_ITEM",
            WarningCode::DeprecatedItem => "LOAD_DEPRECATED_ITEM",
            WarningCode::AppendNoValues => "LOAD_APPEND_NO_VALUES",
            WarningCode::ExceptionNameNotUnique => "LOAD_EXCEPTION_NAME_NOT_UNIQUE",
            WarningCode::InvalidMacroName => "LOAD_INVALID_MACRO_NAME",
            WarningCode::InvalidListName => "LOAD_INVALID_LIST_NAME",
            WarningCode::CompileCondition => "LOAD_COMPILE_CONDITION",
            WarningCode::UnknownKey => "LOAD_UNKNOWN_KEY",
        }
    }
}

/// Where a diagnostic points: the file, a 1-based line and column, and the item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Context {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// `rule`, `macro`, `list`, ... (empty for file-level problems).
    pub item_type: String,
    /// The item's name (empty when it has none or it was not read yet).
    pub item: String,
}

/// One load error or warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic<C> {
    pub code: C,
    pub message: String,
    #[serde(flatten)]
    pub context: Context,
}

pub type LoadError = Diagnostic<ErrorCode>;
pub type LoadWarning = Diagnostic<WarningCode>;

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_diag(f, self.code.as_str(), &self.message, &self.context)
    }
}

impl std::fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_diag(f, self.code.as_str(), &self.message, &self.context)
    }
}

fn write_diag(
    f: &mut std::fmt::Formatter<'_>,
    code: &str,
    msg: &str,
    c: &Context,
) -> std::fmt::Result {
    write!(f, "{}:{}:{}: {code}: {msg}", c.file, c.line, c.column)?;
    if !c.item.is_empty() {
        write!(f, " ({} '{}')", c.item_type, c.item)?;
    }
    Ok(())
}

/// The outcome of loading one file: Falco's `validate --json` entry, plus item counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FileResult {
    pub name: String,
    pub successful: bool,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadWarning>,
    pub counts: ItemCounts,
}

/// How many items a file defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct ItemCounts {
    pub rules: usize,
    pub macros: usize,
    pub lists: usize,
    /// Rules defined with `enabled: false`.
    pub disabled_rules: usize,
}

/// Falco's `validate --json` document: `{"falco_load_results": [...]}`, one entry per file.
pub fn load_results_json(results: &[FileResult]) -> String {
    let body = serde_json::json!({ "falco_load_results": results });
    serde_json::to_string_pretty(&body).unwrap_or_default()
}
