//! Pure types and rules of callgate: phone numbers, trigger paths, API keys, templates,
//! agent definitions, declared variables and the run lifecycle. Nothing here does I/O, so every
//! rule can be unit- and property-tested without a server.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod clock;
pub mod context;
pub mod definition;
pub mod json_text;
pub mod lifecycle;
pub mod object_text;
pub mod pacing;
pub mod phone;
pub mod rfc3339;
pub mod system_context;
pub mod template;
pub mod trigger_path;
pub mod variables;

pub use phone::E164;
pub use trigger_path::TriggerPath;
