//! A compact document tree built from the html5gum tokenizer: the HTML5 tokenizer is exact
//! (character references, raw-text elements, comments), and the tree construction here
//! covers what matters for text extraction — void elements, implied end tags (`p`, `li`,
//! `td`, `tr`, `option`, headings), end tags that close intervening elements, and a depth cap
//! so that pathological nesting stays bounded. Only the attributes extraction looks at are
//! kept.

use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
use html5gum::{Emitter, ForwardingEmitter, Tokenizer};

/// The callback emitter without parse-error reporting (we ignore errors; checking every
/// character for them costs an eighth of the parse).
struct Quiet<E>(E);

impl<E: Emitter> ForwardingEmitter for Quiet<E> {
    type Token = E::Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.0
    }

    fn should_emit_errors(&mut self) -> bool {
        false
    }
}

/// Element kinds the extractor distinguishes; every other element is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Html,
    Head,
    Body,
    Title,
    Meta,
    A,
    P,
    Div,
    Span,
    Br,
    Hr,
    H(u8),
    Ul,
    Ol,
    Li,
    Dl,
    Dt,
    Dd,
    Table,
    Thead,
    Tbody,
    Tfoot,
    Tr,
    Td,
    Th,
    Caption,
    Pre,
    Code,
    Blockquote,
    Article,
    Main,
    Section,
    Header,
    Footer,
    Nav,
    Aside,
    Figure,
    Figcaption,
    Img,
    Form,
    Button,
    Input,
    Select,
    Option,
    Textarea,
    Label,
    Script,
    Style,
    Noscript,
    Template,
    Svg,
    Iframe,
    Object,
    Embed,
    Canvas,
    Video,
    Audio,
    Picture,
    Source,
    Dialog,
    Menu,
    Address,
    Time,
    Strong,
    B,
    Em,
    I,
    Sup,
    Sub,
    Other,
}

impl Tag {
    pub fn from_name(name: &[u8]) -> Tag {
        match name {
            b"html" => Tag::Html,
            b"head" => Tag::Head,
            b"body" => Tag::Body,
            b"title" => Tag::Title,
            b"meta" => Tag::Meta,
            b"a" => Tag::A,
            b"p" => Tag::P,
            b"div" => Tag::Div,
            b"span" => Tag::Span,
            b"br" => Tag::Br,
            b"hr" => Tag::Hr,
            b"h1" => Tag::H(1),
            b"h2" => Tag::H(2),
            b"h3" => Tag::H(3),
            b"h4" => Tag::H(4),
            b"h5" => Tag::H(5),
            b"h6" => Tag::H(6),
            b"ul" => Tag::Ul,
            b"ol" => Tag::Ol,
            b"li" => Tag::Li,
            b"dl" => Tag::Dl,
            b"dt" => Tag::Dt,
            b"dd" => Tag::Dd,
            b"table" => Tag::Table,
            b"thead" => Tag::Thead,
            b"tbody" => Tag::Tbody,
            b"tfoot" => Tag::Tfoot,
            b"tr" => Tag::Tr,
            b"td" => Tag::Td,
            b"th" => Tag::Th,
            b"caption" => Tag::Caption,
            b"pre" | b"listing" | b"xmp" => Tag::Pre,
            b"code" => Tag::Code,
            b"blockquote" => Tag::Blockquote,
            b"article" => Tag::Article,
            b"main" => Tag::Main,
            b"section" => Tag::Section,
            b"header" => Tag::Header,
            b"footer" => Tag::Footer,
            b"nav" => Tag::Nav,
            b"aside" => Tag::Aside,
            b"figure" => Tag::Figure,
            b"figcaption" => Tag::Figcaption,
            b"img" => Tag::Img,
            b"form" => Tag::Form,
            b"button" => Tag::Button,
            b"input" => Tag::Input,
            b"select" => Tag::Select,
            b"option" | b"optgroup" | b"datalist" => Tag::Option,
            b"textarea" => Tag::Textarea,
            b"label" => Tag::Label,
            b"script" => Tag::Script,
            b"style" => Tag::Style,
            b"noscript" => Tag::Noscript,
            b"template" => Tag::Template,
            b"svg" | b"math" => Tag::Svg,
            b"iframe" | b"frame" | b"frameset" => Tag::Iframe,
            b"object" | b"applet" => Tag::Object,
            b"embed" => Tag::Embed,
            b"canvas" => Tag::Canvas,
            b"video" => Tag::Video,
            b"audio" => Tag::Audio,
            b"picture" => Tag::Picture,
            b"source" | b"track" => Tag::Source,
            b"dialog" => Tag::Dialog,
            b"menu" => Tag::Menu,
            b"address" => Tag::Address,
            b"time" => Tag::Time,
            b"strong" => Tag::Strong,
            b"b" => Tag::B,
            b"em" => Tag::Em,
            b"i" => Tag::I,
            b"sup" => Tag::Sup,
            b"sub" => Tag::Sub,
            _ => Tag::Other,
        }
    }

    /// Elements without content or end tag.
    fn is_void(name: &[u8]) -> bool {
        matches!(
            name,
            b"area"
                | b"base"
                | b"br"
                | b"col"
                | b"embed"
                | b"hr"
                | b"img"
                | b"input"
                | b"link"
                | b"meta"
                | b"param"
                | b"source"
                | b"track"
                | b"wbr"
                | b"keygen"
        )
    }

    /// Start tags that close an open `<p>`.
    fn closes_p(self) -> bool {
        matches!(
            self,
            Tag::P
                | Tag::Div
                | Tag::H(_)
                | Tag::Ul
                | Tag::Ol
                | Tag::Dl
                | Tag::Table
                | Tag::Pre
                | Tag::Blockquote
                | Tag::Article
                | Tag::Main
                | Tag::Section
                | Tag::Header
                | Tag::Footer
                | Tag::Nav
                | Tag::Aside
                | Tag::Figure
                | Tag::Form
                | Tag::Hr
                | Tag::Address
                | Tag::Menu
                | Tag::Dialog
        )
    }

    /// Block-level for rendering: text before and after goes on its own line.
    pub fn is_block(self) -> bool {
        !matches!(
            self,
            Tag::A
                | Tag::Span
                | Tag::Code
                | Tag::Time
                | Tag::Strong
                | Tag::B
                | Tag::Em
                | Tag::I
                | Tag::Sup
                | Tag::Sub
                | Tag::Label
                | Tag::Img
                | Tag::Br
                | Tag::Other
                | Tag::Input
                | Tag::Button
                | Tag::Select
                | Tag::Option
                | Tag::Picture
                | Tag::Source
        )
    }
}

/// Node index in `Dom::nodes`.
pub type NodeId = u32;
pub const NONE: NodeId = u32::MAX;

#[derive(Debug, Clone)]
pub struct Node {
    pub tag: Tag,
    pub parent: NodeId,
    pub first_child: NodeId,
    pub last_child: NodeId,
    pub next_sibling: NodeId,
    /// Text nodes: the range of their (raw) text in `Dom::text`.
    pub text: Option<(u32, u32)>,
    /// Lowercased `class` and `id` values, space-separated (elements only).
    pub class_id: Box<str>,
    pub attrs: Attrs,
}

/// The few attributes extraction uses.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub hidden: bool,
    pub role: Option<Box<str>>,
    pub itemprop: Option<Box<str>>,
    pub href: Option<Box<str>>,
    pub alt: Option<Box<str>>,
    pub lang: Option<Box<str>>,
    /// `<meta>`: name/property and content.
    pub meta_name: Option<Box<str>>,
    pub meta_content: Option<Box<str>>,
}

/// Limits that keep pathological pages bounded.
#[derive(Debug, Clone, Copy)]
pub struct DomLimits {
    pub max_depth: usize,
    pub max_nodes: usize,
}

#[derive(Debug, Default)]
pub struct Dom {
    pub nodes: Vec<Node>,
    pub text: String,
    /// The depth or node cap was hit (the tree is flattened / cut there).
    pub limited: bool,
}

struct Builder {
    dom: Dom,
    stack: Vec<NodeId>,
    limits: DomLimits,
    // Start tag being read.
    pending_name: Vec<u8>,
    pending_attr: Vec<u8>,
    pending_value: Vec<u8>,
    attr_open: bool,
    pending: Option<(Tag, Attrs, String, String)>,
}

impl Builder {
    /// Store the attribute just read, if extraction uses it.
    fn finish_attr(&mut self) {
        if !std::mem::replace(&mut self.attr_open, false) {
            return;
        }
        let Some((tag, attrs, class, id)) = self.pending.as_mut() else {
            return;
        };
        let value = self.pending_value.as_slice();
        let v = || {
            Some(
                String::from_utf8_lossy(value)
                    .trim()
                    .to_string()
                    .into_boxed_str(),
            )
        };
        match self.pending_attr.as_slice() {
            b"class" => *class = String::from_utf8_lossy(value).into_owned(),
            b"id" => *id = String::from_utf8_lossy(value).into_owned(),
            b"hidden" => attrs.hidden = true,
            b"role" => attrs.role = v(),
            b"itemprop" => attrs.itemprop = v(),
            b"href" if *tag == Tag::A => attrs.href = v(),
            b"alt" if *tag == Tag::Img => attrs.alt = v(),
            b"lang" => attrs.lang = v(),
            b"name" | b"property" if *tag == Tag::Meta => attrs.meta_name = v(),
            b"content" if *tag == Tag::Meta => attrs.meta_content = v(),
            b"aria-hidden" if value.eq_ignore_ascii_case(b"true") => attrs.hidden = true,
            b"style" => {
                let s: String = String::from_utf8_lossy(value)
                    .to_ascii_lowercase()
                    .split_whitespace()
                    .collect();
                if s.contains("display:none") || s.contains("visibility:hidden") {
                    attrs.hidden = true;
                }
            }
            _ => {}
        }
    }

    fn current(&self) -> NodeId {
        *self.stack.last().unwrap_or(&0)
    }

    fn append(&mut self, node: Node) -> Option<NodeId> {
        if self.dom.nodes.len() >= self.limits.max_nodes {
            self.dom.limited = true;
            return None;
        }
        let id = self.dom.nodes.len() as NodeId;
        let parent = node.parent;
        self.dom.nodes.push(node);
        let p = &mut self.dom.nodes[parent as usize];
        let last = p.last_child;
        if last == NONE {
            p.first_child = id;
        }
        p.last_child = id;
        if last != NONE {
            self.dom.nodes[last as usize].next_sibling = id;
        }
        Some(id)
    }

    fn new_node(&self, tag: Tag) -> Node {
        Node {
            tag,
            parent: self.current(),
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            text: None,
            class_id: Box::from(""),
            attrs: Attrs::default(),
        }
    }

    fn text(&mut self, value: &[u8]) {
        if value.is_empty() {
            return;
        }
        let s = String::from_utf8_lossy(value);
        let cur = self.current();
        // Merge with a preceding text node.
        let last = self.dom.nodes[cur as usize].last_child;
        if last != NONE {
            if let Some((start, end)) = self.dom.nodes[last as usize].text {
                if end as usize == self.dom.text.len() {
                    self.dom.text.push_str(&s);
                    self.dom.nodes[last as usize].text = Some((start, self.dom.text.len() as u32));
                    return;
                }
            }
        }
        let start = self.dom.text.len() as u32;
        self.dom.text.push_str(&s);
        let mut node = self.new_node(Tag::Other);
        node.text = Some((start, self.dom.text.len() as u32));
        self.append(node);
    }

    fn has_open(&self, tag: Tag, stop: &[Tag]) -> Option<usize> {
        for (i, &id) in self.stack.iter().enumerate().rev() {
            let t = self.dom.nodes[id as usize].tag;
            if t == tag {
                return Some(i);
            }
            if stop.contains(&t) {
                return None;
            }
        }
        None
    }

    /// Close the open element of the first of `tags` found below a `stop` element (the
    /// implied end tag of a new `<p>`, `<li>`, `<td>`…).
    fn close_implied(&mut self, tags: &[Tag], stop: &[Tag]) {
        if let Some(i) = tags.iter().find_map(|&t| self.has_open(t, stop)) {
            self.close_to(i);
        }
    }

    fn close_to(&mut self, depth: usize) {
        self.stack.truncate(depth.max(1));
    }

    fn start_tag(&mut self, name: &[u8], attrs: Attrs, class: String, id: String) {
        let tag = Tag::from_name(name);
        // Implied end tags.
        if tag.closes_p() {
            self.close_implied(&[Tag::P], &[Tag::Table, Tag::Td, Tag::Th, Tag::Body]);
        }
        match tag {
            Tag::Li => self.close_implied(&[Tag::Li], &[Tag::Ul, Tag::Ol, Tag::Menu, Tag::Table]),
            Tag::Dt | Tag::Dd => self.close_implied(&[Tag::Dd, Tag::Dt], &[Tag::Dl, Tag::Table]),
            Tag::Td | Tag::Th => self.close_implied(&[Tag::Td, Tag::Th], &[Tag::Tr, Tag::Table]),
            Tag::Tr => self.close_implied(&[Tag::Tr], &[Tag::Table]),
            Tag::Option => self.close_implied(&[Tag::Option], &[Tag::Select]),
            Tag::H(_) => {
                let cur = self.current();
                if matches!(self.dom.nodes[cur as usize].tag, Tag::H(_)) {
                    self.stack.pop();
                }
            }
            Tag::Html | Tag::Body | Tag::Head => {
                // Repeated structural tags: merge attributes only (e.g. `lang`).
                if let Some(&existing) = self
                    .stack
                    .iter()
                    .find(|&&id| self.dom.nodes[id as usize].tag == tag)
                {
                    if attrs.lang.is_some()
                        && self.dom.nodes[existing as usize].attrs.lang.is_none()
                    {
                        self.dom.nodes[existing as usize].attrs.lang = attrs.lang;
                    }
                    return;
                }
            }
            _ => {}
        }
        let mut node = self.new_node(tag);
        let mut ci = class;
        if !id.is_empty() {
            if !ci.is_empty() {
                ci.push(' ');
            }
            ci.push_str(&id);
        }
        ci.make_ascii_lowercase();
        node.class_id = ci.into_boxed_str();
        node.attrs = attrs;
        let Some(new) = self.append(node) else {
            return;
        };
        if Tag::is_void(name) {
            return;
        }
        if self.stack.len() >= self.limits.max_depth {
            // Too deep: keep the element but put what follows beside it, not inside.
            self.dom.limited = true;
            return;
        }
        self.stack.push(new);
    }

    fn end_tag(&mut self, name: &[u8]) {
        if name == b"br" {
            self.start_tag(b"br", Attrs::default(), String::new(), String::new());
            return;
        }
        let tag = Tag::from_name(name);
        if matches!(tag, Tag::Html | Tag::Body) {
            return;
        }
        if tag == Tag::Other {
            // Unknown elements: close the nearest one (any unknown), if it is on top.
            let cur = self.current();
            if self.stack.len() > 1 && self.dom.nodes[cur as usize].tag == Tag::Other {
                self.stack.pop();
            }
            return;
        }
        let stop: &[Tag] = match tag {
            Tag::Td | Tag::Th | Tag::Tr => &[Tag::Table],
            Tag::Li => &[Tag::Ul, Tag::Ol],
            _ => &[],
        };
        let found = if let Tag::H(_) = tag {
            self.stack
                .iter()
                .rposition(|&id| matches!(self.dom.nodes[id as usize].tag, Tag::H(_)))
        } else {
            self.has_open(tag, stop)
        };
        if let Some(i) = found {
            self.close_to(i);
        }
    }
}

/// Parse `html` into a tree. Node 0 is the document root.
pub fn parse(html: &str, limits: DomLimits) -> Dom {
    let root = Node {
        tag: Tag::Other,
        parent: 0,
        first_child: NONE,
        last_child: NONE,
        next_sibling: NONE,
        text: None,
        class_id: Box::from(""),
        attrs: Attrs::default(),
    };
    let mut b = Builder {
        dom: Dom {
            nodes: vec![root],
            text: String::with_capacity(html.len() / 3),
            limited: false,
        },
        stack: vec![0],
        limits,
        pending_name: Vec::new(),
        pending_attr: Vec::new(),
        pending_value: Vec::new(),
        attr_open: false,
        pending: None,
    };
    {
        let b = &mut b;
        let mut emitter = CallbackEmitter::new(
            move |event: CallbackEvent<'_>, _span: html5gum::Span<()>| -> Option<()> {
                match event {
                    CallbackEvent::OpenStartTag { name } => {
                        b.pending_name.clear();
                        b.pending_name.extend_from_slice(name);
                        b.pending = Some((
                            Tag::from_name(name),
                            Attrs::default(),
                            String::new(),
                            String::new(),
                        ));
                    }
                    CallbackEvent::AttributeName { name } => {
                        b.finish_attr();
                        b.pending_attr.clear();
                        b.pending_attr.extend_from_slice(name);
                        b.pending_value.clear();
                        b.attr_open = true;
                    }
                    CallbackEvent::AttributeValue { value } => {
                        // Values may arrive in several pieces.
                        b.pending_value.extend_from_slice(value);
                    }
                    CallbackEvent::CloseStartTag { .. } => {
                        b.finish_attr();
                        if let Some((_, attrs, class, id)) = b.pending.take() {
                            let name = std::mem::take(&mut b.pending_name);
                            b.start_tag(&name, attrs, class, id);
                            b.pending_name = name;
                        }
                    }
                    CallbackEvent::EndTag { name } => {
                        let name = name.to_vec();
                        b.end_tag(&name);
                    }
                    CallbackEvent::String { value } => b.text(value),
                    CallbackEvent::Comment { .. }
                    | CallbackEvent::Doctype { .. }
                    | CallbackEvent::Error(_) => {}
                }
                None
            },
        );
        emitter.naively_switch_states(true);
        for _ in Tokenizer::new_with_emitter(html, Quiet(emitter)) {}
    }
    b.dom
}

impl Dom {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn text_of(&self, id: NodeId) -> Option<&str> {
        self.nodes[id as usize]
            .text
            .map(|(s, e)| &self.text[s as usize..e as usize])
    }

    pub fn children(&self, id: NodeId) -> Children<'_> {
        Children {
            dom: self,
            next: self.nodes[id as usize].first_child,
        }
    }

    /// The text under `id`, whitespace-collapsed, leaving out the subtrees `skip` names.
    pub fn collect_text(&self, id: NodeId, skip: impl Fn(NodeId) -> bool) -> String {
        let mut out = String::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            if let Some(t) = self.text_of(n) {
                out.push_str(t);
                out.push(' ');
            } else if !skip(n) {
                let mut kids: Vec<NodeId> = self.children(n).collect();
                kids.reverse();
                stack.extend(kids);
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Is `id` a text node?
    pub fn is_text(&self, id: NodeId) -> bool {
        self.nodes[id as usize].text.is_some()
    }
}

pub struct Children<'a> {
    dom: &'a Dom,
    next: NodeId,
}

impl Iterator for Children<'_> {
    type Item = NodeId;
    fn next(&mut self) -> Option<NodeId> {
        if self.next == NONE {
            return None;
        }
        let id = self.next;
        self.next = self.dom.nodes[id as usize].next_sibling;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DomLimits = DomLimits {
        max_depth: 256,
        max_nodes: 1 << 20,
    };

    fn tags_under(dom: &Dom, id: NodeId) -> Vec<Tag> {
        dom.children(id)
            .filter(|&c| !dom.is_text(c))
            .map(|c| dom.node(c).tag)
            .collect()
    }

    #[test]
    fn implied_end_tags() {
        let dom = parse("<ul><li>a<li>b</ul><p>one<p>two<div>x</div>", LIMITS);
        let ul = dom.children(0).next().unwrap();
        assert_eq!(tags_under(&dom, ul), vec![Tag::Li, Tag::Li]);
        let top = tags_under(&dom, 0);
        assert_eq!(top, vec![Tag::Ul, Tag::P, Tag::P, Tag::Div]);
    }

    #[test]
    fn entities_and_raw_text() {
        let dom = parse(
            "<p>a &amp; b &eacute;</p><script>if (a<b) x='</p>'</script>",
            LIMITS,
        );
        let p = dom.children(0).next().unwrap();
        let t = dom.children(p).next().unwrap();
        assert_eq!(dom.text_of(t), Some("a & b é"));
        let script = dom.children(0).nth(1).unwrap();
        assert_eq!(dom.node(script).tag, Tag::Script);
    }

    #[test]
    fn deep_nesting_is_capped() {
        let html = "<div>".repeat(100_000) + "deep";
        let dom = parse(&html, LIMITS);
        assert!(dom.limited);
        assert!(dom.nodes.len() > 1000);
    }
}
