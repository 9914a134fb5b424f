//! Main-content selection on a parsed page: boilerplate subtrees are pruned by tag, by
//! hidden-ness and by their class/id names; the remaining text blocks are scored
//! (readability-style: paragraph length, commas, link density, container names) to find the
//! article container and the sibling blocks that belong with it; the chosen blocks are then
//! rendered as plain text with one block per line.

use crate::dom::{Dom, NodeId, Tag, NONE};
use crate::{ExtractOptions, Favor};

/// Words in a class or id that mark a block as boilerplate.
const BOILERPLATE: &[&str] = &[
    "comment",
    "disqus",
    "footer",
    "cookie",
    "consent",
    "gdpr",
    "newsletter",
    "subscri",
    "share",
    "sharing",
    "social",
    "related",
    "recommend",
    "advert",
    "sponsor",
    "promo",
    "banner",
    "masthead",
    "breadcrumb",
    "pagination",
    "pager",
    "navbar",
    "navigation",
    "menu",
    "popup",
    "modal",
    "skip-link",
    "sr-only",
    "screen-reader",
    "visually-hidden",
    "print-only",
    "read-more",
    "readmore",
    "more-stories",
    "trending",
    "outbrain",
    "taboola",
    "signup",
    "sign-up",
    "login",
    "tags",
    "tagcloud",
    "byline",
    "author-info",
    "author-bio",
    "about-author",
    "rating",
    "toolbar",
    "tooltip",
    "dropdown",
    "meta",
    "caption",
    "credit",
    "copyright",
    "author",
    "autor",
    "teilen",
    "anzeige",
    "werbung",
    "notice",
    "community",
    "ad-unit",
    "toc",
];

/// Headings after which an article's own text is over (compared lowercased, without a
/// trailing colon).
const SECTION_ENDS: &[&str] = &[
    "comments",
    "comment",
    "leave a comment",
    "leave a reply",
    "related",
    "related articles",
    "related posts",
    "related stories",
    "read more",
    "more stories",
    "you may also like",
    "you might also like",
    "recommended",
    "share this",
    "share this article",
    "share",
    "advertisement",
    "kommentare",
    "kommentar",
    "kommentieren",
    "das könnte sie auch interessieren",
    "das könnte dich auch interessieren",
    "ähnliche artikel",
    "ähnliche beiträge",
    "weitere artikel",
    "mehr zum thema",
    "mehr themen",
    "beiträge zum thema",
    "teilen",
    "artikel teilen",
    "diesen artikel teilen",
    "commentaires",
    "articles similaires",
    "à lire aussi",
    "lire aussi",
    "comentarios",
    "noticias relacionadas",
    "notas relacionadas",
    "te puede interesar",
    "komentarze",
    "czytaj także",
    "zobacz także",
    "podobne artykuły",
];

/// Words used both for boilerplate and for layout wrappers ("has-sidebar", "elementor-widget"):
/// a block so named is removed only when it looks like boilerplate too (mostly links, or
/// little text).
const LAYOUT_BOILERPLATE: &[&str] = &["widget", "sidebar"];

/// Words that mark a block as content; they protect it from the list above.
const CONTENT: &[&str] = &[
    "article-body",
    "articlebody",
    "article__body",
    "article-content",
    "article_content",
    "articlecontent",
    "post-content",
    "post_content",
    "postcontent",
    "post-body",
    "entry-content",
    "entry_content",
    "story-body",
    "storybody",
    "story-content",
    "main-content",
    "maincontent",
    "body-text",
    "bodytext",
    "text-content",
    "rich-text",
    "richtext",
    "article-text",
    "blog-content",
    "page-content",
];

/// Scoring weights of class/id words (readability's idea, our own lists).
const POSITIVE: &[&str] = &[
    "article", "body", "content", "entry", "hentry", "main", "post", "text", "blog", "story",
];
const NEGATIVE: &[&str] = &[
    "hidden", "banner", "combx", "comment", "contact", "foot", "footnote", "masthead", "media",
    "meta", "promo", "related", "scroll", "share", "shoutbox", "sidebar", "sponsor", "shopping",
    "tags", "tool", "widget", "nav", "menu", "header", "caption", "credit",
];

/// Does a class/id string contain any of these words anywhere (scoring weights)?
fn has_word(class_id: &str, words: &Substrings) -> bool {
    !class_id.is_empty() && words.is_match(class_id)
}

/// A word list matched as substrings, compiled once.
type Substrings = std::sync::LazyLock<aho_corasick::AhoCorasick>;

static CONTENT_WORDS: Substrings = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(CONTENT).expect("word lists are valid patterns")
});
static POSITIVE_WORDS: Substrings = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(POSITIVE).expect("word lists are valid patterns")
});
static NEGATIVE_WORDS: Substrings = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(NEGATIVE).expect("word lists are valid patterns")
});

/// Does a class/id name a boilerplate block? Words are matched against the parts of each
/// class token (split at `-` and `_`): exactly, as a suffix ("mainmenu"), or — for longer
/// words — as a prefix ("comments", "advertisement"); words with a dash match anywhere.
fn names_boilerplate(class_id: &str, words: &WordSet) -> bool {
    if class_id.is_empty() {
        return false;
    }
    class_id.split_ascii_whitespace().any(|token| {
        words.dashed.is_match(token)
            || token.split(['-', '_']).any(|part| {
                words.plain.find_overlapping_iter(part).any(|m| {
                    let w = m.end() - m.start();
                    (m.end() == part.len() && (m.start() == 0 || part.len() > w))
                        || (m.start() == 0 && w >= 6)
                })
            })
    })
}

/// A word list compiled for `names_boilerplate`: words with a dash are matched anywhere in a
/// class token, the others against its parts.
struct WordSet {
    plain: aho_corasick::AhoCorasick,
    dashed: aho_corasick::AhoCorasick,
}

impl WordSet {
    fn new(words: &[&str]) -> WordSet {
        let build = |dashed: bool| {
            aho_corasick::AhoCorasick::new(words.iter().filter(|w| w.contains('-') == dashed))
                .expect("boilerplate word lists are valid patterns")
        };
        WordSet {
            plain: build(false),
            dashed: build(true),
        }
    }
}

static BOILERPLATE_SET: std::sync::LazyLock<WordSet> =
    std::sync::LazyLock::new(|| WordSet::new(BOILERPLATE));
static LAYOUT_SET: std::sync::LazyLock<WordSet> =
    std::sync::LazyLock::new(|| WordSet::new(LAYOUT_BOILERPLATE));

/// A class token that names content and nothing else ("article", "entry-content",
/// "post"): it outweighs a boilerplate word in another token ("box article modal-enabled").
fn has_content_token(class_id: &str) -> bool {
    class_id.split_ascii_whitespace().any(|token| {
        let tokens = token;
        !names_boilerplate(tokens, &BOILERPLATE_SET)
            && token.split(['-', '_']).any(|part| {
                matches!(
                    part,
                    "article" | "content" | "post" | "entry" | "story" | "main" | "text" | "body"
                )
            })
    })
}

/// What to do with an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    Keep,
    /// Always removed.
    Hard,
    /// Removed unless it holds most of the page's text.
    Soft,
    /// Removed when it is mostly links or has little text (and is not most of the page).
    Layout,
    /// A `<header>`: like `Layout`, with more text allowed (title, byline, standfirst).
    Header,
}

/// Per-node statistics of visible, unpruned text.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    chars: u32,
    link_chars: u32,
    commas: u32,
    paragraphs: u32,
}

/// What a class/id string says, computed once per distinct string on a page.
#[derive(Debug, Clone, Copy, Default)]
struct ClassInfo {
    content_named: bool,
    boilerplate: bool,
    layout: bool,
    weight: f32,
}

fn class_info(ci: &str) -> ClassInfo {
    if ci.is_empty() {
        return ClassInfo::default();
    }
    let content_named = has_word(ci, &CONTENT_WORDS) || has_content_token(ci);
    let mut weight = 0.0;
    if has_word(ci, &NEGATIVE_WORDS) {
        weight -= 25.0;
    }
    if has_word(ci, &POSITIVE_WORDS) {
        weight += 25.0;
    }
    if has_word(ci, &CONTENT_WORDS) {
        weight += 50.0;
    }
    ClassInfo {
        content_named,
        boilerplate: !content_named && names_boilerplate(ci, &BOILERPLATE_SET),
        layout: !content_named && names_boilerplate(ci, &LAYOUT_SET),
        weight,
    }
}

pub struct Page<'a> {
    dom: &'a Dom,
    classes: Vec<ClassInfo>,
    pruned: Vec<bool>,
    stats: Vec<Stats>,
    opts: &'a ExtractOptions,
}

fn count_text(s: &str) -> (u32, u32) {
    let mut chars = 0u32;
    let mut commas = 0u32;
    for c in s.chars() {
        if !c.is_whitespace() {
            chars += 1;
            if matches!(c, ',' | '，' | '、' | '،') {
                commas += 1;
            }
        }
    }
    (chars, commas)
}

impl<'a> Page<'a> {
    pub fn new(dom: &'a Dom, opts: &'a ExtractOptions) -> Self {
        let n = dom.nodes.len();
        // Parents come before children, so one forward pass inherits pruning. First the
        // certain removals (scripts, hidden, navigation…), then the ones judged by class/id
        // names, which spare a block holding most of the page's text (a layout wrapper named
        // `has-sidebar` is not a sidebar).
        let mut cache: std::collections::HashMap<&str, ClassInfo> = Default::default();
        let classes: Vec<ClassInfo> = dom
            .nodes
            .iter()
            .map(|node| {
                *cache
                    .entry(&node.class_id)
                    .or_insert_with(|| class_info(&node.class_id))
            })
            .collect();
        let mut pruned = vec![false; n];
        let mut soft = vec![Prune::Keep; n];
        for id in 1..n {
            let node = &dom.nodes[id];
            if pruned[node.parent as usize] {
                pruned[id] = true;
                continue;
            }
            if node.text.is_none() {
                match Self::prune(dom, id, &classes[id], opts) {
                    Prune::Keep => {}
                    Prune::Hard => pruned[id] = true,
                    p => soft[id] = p,
                }
            }
        }
        let raw = Self::compute_stats(dom, &pruned);
        let total = raw[0].chars.max(1) as f32;
        if soft.iter().any(|s| *s != Prune::Keep) {
            for id in 1..n {
                let parent = dom.nodes[id].parent as usize;
                let r = raw[id];
                let minor = (r.chars as f32) < total * 0.6;
                let linky = r.link_chars as f32 > r.chars as f32 * 0.25;
                pruned[id] = pruned[id]
                    || pruned[parent]
                    || match soft[id] {
                        Prune::Soft => minor,
                        Prune::Layout => minor && (linky || r.chars < 250),
                        Prune::Header => minor && (linky || r.chars < 150),
                        _ => false,
                    };
            }
        }
        let stats = Self::compute_stats(dom, &pruned);
        Page {
            dom,
            classes,
            pruned,
            stats,
            opts,
        }
    }

    fn compute_stats(dom: &Dom, pruned: &[bool]) -> Vec<Stats> {
        let n = dom.nodes.len();
        let mut stats = vec![Stats::default(); n];
        for id in (1..n).rev() {
            if pruned[id] {
                continue;
            }
            let node = &dom.nodes[id];
            let mut s = stats[id];
            if let Some(t) = dom.text_of(id as NodeId) {
                let (c, commas) = count_text(t);
                s.chars = c;
                s.commas = commas;
            }
            match node.tag {
                Tag::A => s.link_chars = s.chars,
                Tag::P | Tag::Pre | Tag::Blockquote if s.chars > 0 => s.paragraphs += 1,
                _ => {}
            }
            stats[id] = s;
            let p = node.parent as usize;
            stats[p].chars += s.chars;
            stats[p].link_chars += s.link_chars;
            stats[p].commas += s.commas;
            stats[p].paragraphs += s.paragraphs;
        }
        stats
    }

    /// Should this element and everything under it be left out?
    fn prune(dom: &Dom, id: usize, class: &ClassInfo, opts: &ExtractOptions) -> Prune {
        let node = &dom.nodes[id];
        match node.tag {
            Tag::Head
            | Tag::Title
            | Tag::Meta
            | Tag::Script
            | Tag::Style
            | Tag::Noscript
            | Tag::Template
            | Tag::Svg
            | Tag::Iframe
            | Tag::Object
            | Tag::Embed
            | Tag::Canvas
            | Tag::Video
            | Tag::Audio
            | Tag::Button
            | Tag::Input
            | Tag::Select
            | Tag::Option
            | Tag::Textarea
            | Tag::Dialog => return Prune::Hard,
            Tag::Table if !opts.tables => return Prune::Hard,
            _ => {}
        }
        if node.attrs.hidden {
            return Prune::Hard;
        }
        if opts.mode == crate::Mode::Plain {
            return Prune::Keep;
        }
        match node.tag {
            Tag::Nav | Tag::Footer | Tag::Menu => return Prune::Hard,
            // A page header or form (ASP.NET wraps whole pages in one) goes when it looks like
            // boilerplate; an aside unless it is named as content.
            Tag::Form => return Prune::Layout,
            Tag::Header => return Prune::Header,
            Tag::Aside => {
                return if class.content_named {
                    Prune::Keep
                } else {
                    Prune::Soft
                };
            }
            Tag::Figcaption | Tag::Figure if !opts.images => return Prune::Hard,
            Tag::H(1) if opts.favor != Favor::Recall => return Prune::Hard,
            Tag::Html | Tag::Body | Tag::Main | Tag::Article => return Prune::Keep,
            _ => {}
        }
        if let Some(role) = node.attrs.role.as_deref() {
            if matches!(
                role,
                "navigation"
                    | "banner"
                    | "contentinfo"
                    | "complementary"
                    | "menu"
                    | "search"
                    | "dialog"
                    | "alert"
                    | "menubar"
                    | "toolbar"
            ) {
                return Prune::Soft;
            }
        }
        if class.boilerplate {
            Prune::Soft
        } else if class.layout {
            Prune::Layout
        } else {
            Prune::Keep
        }
    }

    fn link_density(&self, id: NodeId) -> f32 {
        let s = self.stats[id as usize];
        if s.chars == 0 {
            0.0
        } else {
            s.link_chars as f32 / s.chars as f32
        }
    }

    fn class_weight(&self, id: NodeId) -> f32 {
        let mut w = self.classes[id as usize].weight;
        if self.dom.node(id).attrs.itemprop.as_deref() == Some("articleBody") {
            w += 50.0;
        }
        w
    }

    /// Direct text of an element (its own text children), in visible chars.
    fn own_text_chars(&self, id: NodeId) -> u32 {
        self.dom
            .children(id)
            .filter(|&c| self.dom.is_text(c))
            .map(|c| self.stats[c as usize].chars)
            .sum()
    }

    /// Blocks that count as paragraphs when scoring.
    fn is_scorable(&self, id: NodeId) -> bool {
        match self.dom.node(id).tag {
            Tag::P | Tag::Pre | Tag::Td | Tag::Blockquote | Tag::Dd => true,
            Tag::Div | Tag::Section | Tag::Article | Tag::Li | Tag::Span | Tag::Other => {
                self.own_text_chars(id) >= 25
            }
            _ => false,
        }
    }

    fn initial_score(&self, id: NodeId) -> f32 {
        let base = match self.dom.node(id).tag {
            Tag::Div | Tag::Article | Tag::Main | Tag::Section => 5.0,
            Tag::Pre | Tag::Td | Tag::Blockquote => 3.0,
            Tag::Address
            | Tag::Ol
            | Tag::Ul
            | Tag::Dl
            | Tag::Dd
            | Tag::Dt
            | Tag::Li
            | Tag::Form => -3.0,
            Tag::H(_) | Tag::Th => -5.0,
            _ => 0.0,
        };
        base + self.class_weight(id)
    }

    /// The root blocks of the main content, in document order.
    pub fn main_blocks(&self) -> Vec<NodeId> {
        let n = self.dom.nodes.len();
        let mut score = vec![f32::NAN; n];
        for id in 1..n as NodeId {
            if self.pruned[id as usize] || self.dom.is_text(id) || !self.is_scorable(id) {
                continue;
            }
            let s = self.stats[id as usize];
            if s.chars < 25 {
                continue;
            }
            let points = 1.0 + s.commas as f32 + (s.chars as f32 / 100.0).min(3.0);
            let mut anc = self.dom.node(id).parent;
            let mut level = 0;
            while anc != 0 && level < 5 {
                let a = anc as usize;
                if score[a].is_nan() {
                    score[a] = self.initial_score(anc);
                }
                let divider = match level {
                    0 => 1.0,
                    1 => 2.0,
                    l => l as f32 * 3.0,
                };
                score[a] += points / divider;
                anc = self.dom.node(anc).parent;
                level += 1;
            }
        }
        let mut best = NONE;
        let mut best_score = f32::MIN;
        for (id, s) in score.iter_mut().enumerate().skip(1) {
            if s.is_nan() {
                continue;
            }
            *s *= 1.0 - self.link_density(id as NodeId);
            if *s > best_score {
                best_score = *s;
                best = id as NodeId;
            }
        }
        if best == NONE {
            return Vec::new();
        }
        // When several near-best candidates share an ancestor (one article split into many
        // wrapped paragraphs), that ancestor is the container.
        let mut near: Vec<(f32, NodeId)> = (1..n)
            .filter(|&id| !score[id].is_nan() && id as NodeId != best)
            .map(|id| (score[id], id as NodeId))
            .filter(|&(s, _)| s >= best_score * 0.75)
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        near.truncate(4);
        if near.len() >= 3 {
            let mut p = self.dom.node(best).parent;
            while p != 0 && !matches!(self.dom.node(p).tag, Tag::Body | Tag::Html) {
                let inside = near
                    .iter()
                    .filter(|&&(_, c)| self.is_descendant(c, p))
                    .count();
                if inside >= 3 {
                    best = p;
                    break;
                }
                p = self.dom.node(p).parent;
            }
        }
        // A candidate that is most of its parent's text: the parent is the container.
        let mut top = best;
        loop {
            let p = self.dom.node(top).parent;
            if p == 0 || matches!(self.dom.node(p).tag, Tag::Body | Tag::Html) {
                break;
            }
            let (pc, tc) = (self.stats[p as usize].chars, self.stats[top as usize].chars);
            if tc as f32 >= pc as f32 * 0.85 {
                top = p;
            } else {
                break;
            }
        }
        let top_score = if score[top as usize].is_nan() {
            best_score
        } else {
            score[top as usize].max(best_score)
        };
        let parent = self.dom.node(top).parent;
        let threshold = match self.opts.favor {
            Favor::Precision => (top_score * 0.35).max(15.0),
            Favor::Balanced => (top_score * 0.2).max(10.0),
            Favor::Recall => (top_score * 0.1).max(5.0),
        };
        let top_class = &*self.dom.node(top).class_id;
        let mut blocks = Vec::new();
        for sib in self.dom.children(parent) {
            if sib == top {
                blocks.push(sib);
                continue;
            }
            if self.pruned[sib as usize] || self.dom.is_text(sib) {
                continue;
            }
            let mut s = if score[sib as usize].is_nan() {
                0.0
            } else {
                score[sib as usize]
            };
            if !top_class.is_empty() && &*self.dom.node(sib).class_id == top_class {
                s += top_score * 0.2;
            }
            let st = self.stats[sib as usize];
            let ld = self.link_density(sib);
            let keep = s >= threshold
                || (self.dom.node(sib).tag == Tag::P || self.is_scorable(sib))
                    && ((st.chars > 80 && ld < 0.25)
                        || (st.chars > 0 && st.chars <= 80 && ld == 0.0 && {
                            let t = self.render(&[sib]);
                            t.contains(". ") || t.trim_end().ends_with('.')
                        }));
            if keep {
                blocks.push(sib);
            }
        }
        blocks
    }

    /// Drop a block inside the content (lists of links, empty wrappers)?
    fn drop_inside(&self, id: NodeId) -> bool {
        let node = self.dom.node(id);
        let s = self.stats[id as usize];
        let ld = self.link_density(id);
        let limit = match self.opts.favor {
            Favor::Precision => 0.2,
            Favor::Balanced => 0.3,
            Favor::Recall => 0.75,
        };
        match node.tag {
            Tag::Ul | Tag::Ol | Tag::Div | Tag::Section | Tag::Table | Tag::Dl | Tag::Header => {
                ld > limit && s.chars < 2000
                    || (self.class_weight(id) < 0.0 && s.paragraphs == 0 && s.chars < 200)
            }
            Tag::P | Tag::Li => ld > 0.5 && s.chars < 200,
            Tag::Figcaption if self.opts.favor == Favor::Precision => true,
            Tag::H(level) if level >= 2 => self.orphan_heading(id),
            _ => false,
        }
    }

    /// A heading that names what follows an article (comments, related stories, sharing).
    fn ends_content(&self, id: NodeId) -> bool {
        let s = self.stats[id as usize];
        if s.chars == 0 || s.chars > 40 {
            return false;
        }
        let norm = self
            .dom
            .collect_text(id, |n| self.pruned[n as usize])
            .trim_end_matches([':', '.', '!'])
            .to_lowercase();
        SECTION_ENDS.contains(&norm.as_str())
    }

    /// A heading whose section is gone ("Related articles" above a dropped link list) or that
    /// ends the content with nothing after it.
    fn orphan_heading(&self, id: NodeId) -> bool {
        // What follows the heading: its next siblings, else those of its wrappers.
        let mut at = id;
        for _ in 0..4 {
            let mut sib = self.dom.node(at).next_sibling;
            while sib != NONE {
                let visible = !self.pruned[sib as usize] && self.stats[sib as usize].chars > 0;
                if visible {
                    return !self.dom.is_text(sib) && self.drop_inside(sib);
                }
                sib = self.dom.node(sib).next_sibling;
            }
            at = self.dom.node(at).parent;
            if at == 0 || self.pruned[at as usize] {
                break;
            }
        }
        true
    }

    /// Every paragraph-like block with little link text, when no single container holds the
    /// content (or `favor = recall` finds too little).
    pub fn all_paragraph_blocks(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        let n = self.dom.nodes.len();
        let mut covered_until: usize = 0;
        for id in 1..n {
            if id < covered_until {
                continue;
            }
            let nid = id as NodeId;
            if self.pruned[id] || self.dom.is_text(nid) {
                continue;
            }
            let tag = self.dom.node(nid).tag;
            let blockish = matches!(
                tag,
                Tag::P | Tag::Pre | Tag::Blockquote | Tag::H(_) | Tag::Li | Tag::Table | Tag::Dd
            ) || (matches!(tag, Tag::Div | Tag::Section)
                && self.own_text_chars(nid) >= 25);
            if !blockish {
                continue;
            }
            let s = self.stats[id];
            if s.chars >= 10 && self.link_density(nid) < 0.5 {
                out.push(nid);
                covered_until = self.subtree_end(nid);
            }
        }
        out
    }

    /// One past the last node index inside `id`'s subtree (nodes are numbered in document
    /// order, so a subtree is a contiguous range).
    fn subtree_end(&self, id: NodeId) -> usize {
        let mut cur = id;
        loop {
            let node = self.dom.node(cur);
            if node.next_sibling != NONE {
                return node.next_sibling as usize;
            }
            if cur == 0 {
                return self.dom.nodes.len();
            }
            cur = node.parent;
        }
    }

    /// A development view: elements with at least `min_chars` of text, indented, with their
    /// text size, link density and whether they are pruned.
    pub fn outline(&self, min_chars: u32) -> String {
        let mut out = String::new();
        let mut stack = vec![(0u32, 0usize)];
        while let Some((id, lvl)) = stack.pop() {
            let n = self.dom.node(id);
            let total = self.stats_total(id);
            if n.text.is_none() && total >= min_chars {
                out.push_str(&format!(
                    "{}{:?} [{}] chars={} ld={:.2} pruned={}\n",
                    "  ".repeat(lvl),
                    n.tag,
                    n.class_id,
                    self.stats[id as usize].chars,
                    self.link_density(id),
                    self.pruned[id as usize]
                ));
                let mut kids: Vec<u32> = self.dom.children(id).collect();
                kids.reverse();
                stack.extend(kids.into_iter().map(|k| (k, lvl + 1)));
            }
        }
        out
    }

    /// Text under a node counting pruned parts too (for `outline`).
    fn stats_total(&self, id: NodeId) -> u32 {
        let mut total = 0;
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            if let Some(t) = self.dom.text_of(n) {
                total += t.len() as u32;
            }
            stack.extend(self.dom.children(n));
        }
        total
    }

    /// Is `node` inside `ancestor`'s subtree? (Subtrees are contiguous index ranges.)
    fn is_descendant(&self, node: NodeId, ancestor: NodeId) -> bool {
        node > ancestor && (node as usize) < self.subtree_end(ancestor)
    }

    /// Visible text of the page's body (no boilerplate removal beyond scripts and hidden).
    pub fn plain_blocks(&self) -> Vec<NodeId> {
        vec![0]
    }

    /// Render blocks as text: one line per block, inline text joined, whitespace collapsed.
    pub fn render(&self, roots: &[NodeId]) -> String {
        let mut out = Renderer::default();
        for &root in roots {
            self.render_node(root, &mut out, root != 0);
            out.block();
        }
        out.finish()
    }

    fn render_node(&self, root: NodeId, out: &mut Renderer, inside_content: bool) {
        // Iterative walk: (node, entering).
        let mut stack: Vec<(NodeId, bool)> = vec![(root, true)];
        while let Some((id, enter)) = stack.pop() {
            let node = self.dom.node(id);
            if !enter {
                match node.tag {
                    Tag::Td | Tag::Th => out.cell_end(),
                    Tag::Pre => out.pre -= 1,
                    Tag::A if self.opts.links => {
                        if let Some(href) = node.attrs.href.as_deref() {
                            out.push_raw(&format!(" ({href})"));
                        }
                    }
                    t if t.is_block() => out.block(),
                    _ => {}
                }
                continue;
            }
            if id != 0 && self.pruned[id as usize] {
                continue;
            }
            if let Some(t) = self.dom.text_of(id) {
                out.text(t);
                continue;
            }
            if inside_content
                && id != root
                && self.opts.mode == crate::Mode::Main
                && self.drop_inside(id)
            {
                continue;
            }
            if inside_content
                && self.opts.mode == crate::Mode::Main
                && self.opts.favor != Favor::Recall
                && matches!(node.tag, Tag::H(_))
                && self.ends_content(id)
            {
                // "Comments", "Related articles"…: the article is over.
                break;
            }
            match node.tag {
                Tag::Br => {
                    out.line_break();
                    continue;
                }
                Tag::Hr => {
                    out.block();
                    continue;
                }
                Tag::Img => {
                    if self.opts.images {
                        if let Some(alt) = node.attrs.alt.as_deref() {
                            out.text(alt);
                        }
                    }
                    continue;
                }
                Tag::Tr => out.block(),
                // Cells share their row's line (`cell_end` separates them).
                Tag::Td | Tag::Th => {}
                Tag::Pre => {
                    out.block();
                    out.pre += 1;
                }
                t if t.is_block() => out.block(),
                _ => {}
            }
            stack.push((id, false));
            // Children in reverse so the first is handled first.
            let mut kids: Vec<NodeId> = self.dom.children(id).collect();
            kids.reverse();
            stack.extend(kids.into_iter().map(|k| (k, true)));
        }
    }
}

/// Accumulates rendered text.
#[derive(Default)]
struct Renderer {
    out: String,
    line: String,
    pending_space: bool,
    pre: u32,
    cells: u32,
}

impl Renderer {
    fn text(&mut self, t: &str) {
        if self.pre > 0 {
            for (i, part) in t.split('\n').enumerate() {
                if i > 0 {
                    self.line_break();
                }
                self.line.push_str(part.trim_end_matches('\r'));
            }
            return;
        }
        for (i, word) in t.split(|c: char| c.is_whitespace()).enumerate() {
            if i > 0 {
                self.pending_space = true;
            }
            if word.is_empty() {
                continue;
            }
            if self.pending_space && !self.line.is_empty() {
                self.line.push(' ');
            }
            self.pending_space = false;
            self.line.push_str(word);
        }
    }

    fn push_raw(&mut self, s: &str) {
        self.line.push_str(s);
    }

    fn cell_end(&mut self) {
        if !self.line.trim().is_empty() {
            self.line.push_str(" | ");
            self.cells += 1;
        }
        self.pending_space = false;
    }

    fn line_break(&mut self) {
        let l = self.line.trim_end_matches(" | ").trim();
        if !l.is_empty() {
            self.out.push_str(l);
            self.out.push('\n');
        }
        self.line.clear();
        self.pending_space = false;
    }

    fn block(&mut self) {
        self.line_break();
    }

    fn finish(mut self) -> String {
        self.line_break();
        while self.out.ends_with('\n') {
            self.out.pop();
        }
        self.out
    }
}
