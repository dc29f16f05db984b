//! The XML document as a tree of elements that remember their line: [`build_tree`] checks
//! that the text is well-formed XML rooted at `<config>` with no attributes, and the readers
//! on [`Element`] ([`Element::children`], [`Element::value`], [`Element::integer`], ...) turn
//! an element into a value or a [`ConfigError`] naming its line and path.
//!
//! It knows no element but `<config>`: which elements exist and what they mean is the
//! sections' business.

use quick_xml::errors::IllFormedError;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::{ConfigError, ErrorKind};

/// One element of the document, with the line of its start tag.
#[derive(Debug)]
pub struct Element {
    pub(crate) name: String,
    /// `<config>` for the root, then `<rtmp>`, `<rtmp><http_notify>`, ... (the root is left
    /// out of its children's paths).
    pub(crate) path: String,
    pub(crate) line: usize,
    /// All the text directly inside, entities resolved, CDATA included, untrimmed.
    text: String,
    /// The line of the first non-whitespace text, if any.
    text_line: Option<usize>,
    children: Vec<Element>,
}

impl Element {
    /// An error about this element, at its start tag.
    pub(crate) fn error(&self, kind: ErrorKind) -> ConfigError {
        ConfigError::new(self.line, self.path.clone(), kind)
    }

    fn push_text(&mut self, text: &str, line: usize) {
        if self.text_line.is_none() {
            self.text_line = first_text_line(text, line);
        }
        self.text.push_str(text);
    }
}

/// The line of the first non-whitespace character of `text`, which starts on `line`; `None`
/// when it is all whitespace.
fn first_text_line(text: &str, line: usize) -> Option<usize> {
    let i = text.find(|c: char| !c.is_whitespace())?;
    Some(line + text[..i].matches('\n').count())
}

/// Whether quick-xml's idea of a tag name is a plausible XML name (it takes everything up
/// to the `>`, so `<port>1935</port` followed by another tag gives a name with `<` in it).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(|c: char| c.is_whitespace() || c.is_control() || "<>&\"'/=!?".contains(c))
}

/// A tag name as quoted in an error: its first line, at most 40 characters.
fn quote_name(name: &str) -> String {
    let first = name.lines().next().unwrap_or_default();
    let mut quoted: String = first.chars().take(40).collect();
    if quoted.len() < name.len() {
        quoted.push_str("...");
    }
    quoted
}

/// Turns byte offsets into 1-based line numbers, counting forward from the last offset asked.
struct Lines<'a> {
    src: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(src: &'a str) -> Self {
        Lines {
            src: src.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    fn at(&mut self, offset: u64) -> usize {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.src.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.src[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.line
    }
}

/// The innermost open element's path, for XML errors.
fn open_path(stack: &[Element]) -> String {
    stack
        .last()
        .map_or_else(|| "document".to_owned(), |el| el.path.clone())
}

fn xml_error(stack: &[Element], line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::new(line, open_path(stack), ErrorKind::Xml(message.into()))
}

/// Adds text to the open element; text outside the root must be whitespace.
fn add_text(stack: &mut [Element], text: &str, line: usize, what: &str) -> Result<(), ConfigError> {
    match stack.last_mut() {
        Some(el) => {
            el.push_text(text, line);
            Ok(())
        }
        None => match first_text_line(text, line) {
            None => Ok(()),
            Some(line) => Err(xml_error(
                stack,
                line,
                format!("{what} outside the <config> element"),
            )),
        },
    }
}

/// Reads the document into an element tree rooted at `<config>`, checking that it is
/// well-formed and has no attributes.
pub(crate) fn build_tree(xml: &str) -> Result<Element, ConfigError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = Reader::from_str(xml);
    // End tags are matched here instead, to say where the open tag was.
    reader.config_mut().check_end_names = false;
    let mut lines = Lines::new(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let start = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let line = lines.at(reader.error_position());
                let mut message = e.to_string();
                if matches!(
                    e,
                    quick_xml::Error::IllFormed(IllFormedError::UnclosedReference)
                ) {
                    message.push_str(
                        " (write a literal & as &amp;, or put the URL in <![CDATA[...]]>)",
                    );
                }
                return Err(xml_error(&stack, line, message));
            }
        };
        let line = lines.at(start);
        let (tag, empty) = match event {
            Event::Start(tag) => (tag, false),
            Event::Empty(tag) => (tag, true),
            Event::End(tag) => {
                let found = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                if !is_name(&found) {
                    return Err(xml_error(
                        &stack,
                        line,
                        format!(
                            "malformed closing tag </{}> (is a `>` missing?)",
                            quote_name(&found)
                        ),
                    ));
                }
                let Some(el) = stack.pop() else {
                    return Err(xml_error(
                        &stack,
                        line,
                        format!("closing tag </{found}> has no matching open tag"),
                    ));
                };
                if el.name != found {
                    return Err(ConfigError::new(
                        line,
                        el.path,
                        ErrorKind::MismatchedEnd {
                            expected: el.name,
                            open_line: el.line,
                            found,
                        },
                    ));
                }
                close(&mut stack, &mut root, el);
                continue;
            }
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|e| xml_error(&stack, line, e.to_string()))?;
                add_text(&mut stack, &text, line, "text")?;
                continue;
            }
            Event::CData(cdata) => {
                let text = cdata
                    .xml10_content()
                    .map_err(|e| xml_error(&stack, line, e.to_string()))?;
                add_text(&mut stack, &text, line, "CDATA")?;
                continue;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = String::from_utf8_lossy(&reference).into_owned();
                        match resolve_xml_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(xml_error(
                                    &stack,
                                    line,
                                    format!(
                                        "unknown entity &{name}; (only &lt; &gt; &amp; &apos; \
                                         &quot; and character references like &#38; are known)"
                                    ),
                                ))
                            }
                        }
                    }
                    Err(e) => return Err(xml_error(&stack, line, e.to_string())),
                };
                add_text(&mut stack, &resolved, line, "text")?;
                continue;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            Event::Eof => {
                if let Some(el) = stack.pop() {
                    return Err(el.error(ErrorKind::Unclosed));
                }
                return root.ok_or_else(|| ConfigError::new(line, "<config>", ErrorKind::Empty));
            }
        };

        let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
        if !is_name(&name) {
            return Err(xml_error(
                &stack,
                line,
                format!(
                    "malformed tag <{}> (is a `>` missing, or a `<` not written as &lt;?)",
                    quote_name(&name)
                ),
            ));
        }
        let path = match stack.as_slice() {
            [] => {
                if root.is_some() {
                    return Err(ConfigError::new(
                        line,
                        format!("<{name}>"),
                        ErrorKind::ExtraRoot,
                    ));
                }
                if name != "config" {
                    return Err(ConfigError::new(
                        line,
                        format!("<{name}>"),
                        ErrorKind::WrongRoot,
                    ));
                }
                "<config>".to_owned()
            }
            [_root] => format!("<{name}>"),
            [.., parent] => format!("{}<{name}>", parent.path),
        };
        if let Some(attribute) = tag.attributes().next() {
            let attribute = attribute.map_err(|e| xml_error(&stack, line, e.to_string()))?;
            let attribute = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            return Err(ConfigError::new(
                line,
                path,
                ErrorKind::Attribute { attribute },
            ));
        }
        let el = Element {
            name,
            path,
            line,
            text: String::new(),
            text_line: None,
            children: Vec::new(),
        };
        if empty {
            close(&mut stack, &mut root, el);
        } else {
            stack.push(el);
        }
    }
}

/// A complete element goes to its parent, or becomes the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading elements
// ---------------------------------------------------------------------------------------------

/// The children of an element that holds only elements, each allowed and given once.
pub struct Children<'a> {
    found: Vec<&'a Element>,
}

impl<'a> Children<'a> {
    /// The child named `name`, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Element> {
        self.found.iter().copied().find(|el| el.name == name)
    }
}

impl Element {
    /// The children of an element that holds only elements, checked for text, elements not
    /// in `allowed` and duplicates (the first problem in document order is reported).
    pub(crate) fn children(&self, allowed: &[&str]) -> Result<Children<'_>, ConfigError> {
        if let Some(line) = self.text_line {
            let text = self.text.trim();
            let mut excerpt: String = text.chars().take(40).collect();
            if excerpt.len() < text.len() {
                excerpt.push_str("...");
            }
            return Err(ConfigError::new(
                line,
                self.path.clone(),
                ErrorKind::UnexpectedText { text: excerpt },
            ));
        }
        let mut found: Vec<&Element> = Vec::with_capacity(self.children.len());
        for child in &self.children {
            if !allowed.contains(&child.name.as_str()) {
                return Err(child.error(ErrorKind::Unknown {
                    parent: self.path.clone(),
                    allowed: allowed
                        .iter()
                        .map(|name| format!("<{name}>"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }));
            }
            if let Some(first) = found.iter().find(|el| el.name == child.name) {
                return Err(child.error(ErrorKind::Duplicate {
                    first_line: first.line,
                }));
            }
            found.push(child);
        }
        Ok(Children { found })
    }

    /// The trimmed text of an element that holds a value.
    pub(crate) fn value(&self) -> Result<&str, ConfigError> {
        if let Some(child) = self.children.first() {
            return Err(self.error_at(
                child.line,
                ErrorKind::UnexpectedChild {
                    child: child.name.clone(),
                },
            ));
        }
        Ok(self.text.trim())
    }

    /// An error about this element at another line (a child's, or its text's).
    fn error_at(&self, line: usize, kind: ErrorKind) -> ConfigError {
        ConfigError::new(line, self.path.clone(), kind)
    }

    /// `true`, `false`, `1` or `0`, in any case.
    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        let value = self.value()?;
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(self.error(ErrorKind::InvalidBool {
                value: value.to_owned(),
            })),
        }
    }

    /// A whole number in `min..=max`; `what` names it in errors ("port").
    pub(crate) fn integer(
        &self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let value = self.value()?;
        let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error(ErrorKind::InvalidInteger {
                value: value.to_owned(),
                what,
                min,
                max,
            }));
        }
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            // Negative, too large for u64, or outside the range.
            _ => Err(self.error(ErrorKind::OutOfRange {
                value: value.to_owned(),
                what,
                min,
                max,
            })),
        }
    }

    /// A port, 1..=65535.
    pub(crate) fn port(&self) -> Result<u16, ConfigError> {
        let port = self.integer("port", 1, u64::from(u16::MAX))?;
        // In range by the check above.
        Ok(port as u16)
    }

    /// A count in `min..=max`.
    pub(crate) fn count(
        &self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<usize, ConfigError> {
        // The largest range asked for fits a usize on every supported target.
        Ok(self.integer(what, min, max)? as usize)
    }

    /// A duration in whole milliseconds, `min..=max`.
    pub(crate) fn millis(
        &self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<std::time::Duration, ConfigError> {
        Ok(std::time::Duration::from_millis(
            self.integer(what, min, max)?,
        ))
    }
}
