//! The message stream: sessions of users sending the six Segment call types, with the
//! catalogue's events, the four timestamps, type drift and a slow trickle of new
//! properties and events so a long run keeps adding columns and tables.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::catalog::{
    CAMPAIGN_NAMES, CAMPAIGN_SOURCES, CURRENCIES, EVENTS, Kind, LATE_EVENT_NAMES, LATE_EVENT_PROPS,
    LATE_PROPERTY_STEMS, PAGES, Prop, QUERIES, REFERRERS, SCREENS, Shape, Theme,
};
use super::clock;
use super::json_out::JsonOut;
use super::population::{
    self, APP_RELEASES, CITIES, Company, MOBILE_USERS, Platform, Product, User, Video, WEB_USERS,
    chance, hex_id, index, pick, pick_str, push_hex, push_uuid,
};

/// Concurrent sessions per platform.
const WEB_SESSIONS: usize = 40;
const MOBILE_SESSIONS: usize = 24;
/// A new property starts appearing every this many lines...
const NEW_PROPERTY_EVERY: u64 = 2_000;
/// ...and stays in use for this many lines (an experiment that ends).
const PROPERTY_LIFETIME: u64 = 60_000;
/// A brand-new event name appears every this many lines.
const NEW_EVENT_EVERY: u64 = 25_000;
/// Mean milliseconds between consecutive `receivedAt`s is half of this.
const MAX_TICK_MS: u32 = 400;

/// The six Segment call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Track,
    Page,
    Identify,
    Screen,
    Group,
    Alias,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Page => "page",
            Call::Identify => "identify",
            Call::Screen => "screen",
            Call::Group => "group",
            Call::Alias => "alias",
        }
    }
}

/// Call-type mix, in per-mille: track 70%, page 15%, identify 6%, screen 5%, group 2%,
/// alias 2%.
const CALL_MIX: &[(Call, u32)] = &[
    (Call::Track, 700),
    (Call::Page, 150),
    (Call::Identify, 60),
    (Call::Screen, 50),
    (Call::Group, 20),
    (Call::Alias, 20),
];

/// Picks an index with probability proportional to its weight.
#[derive(Debug, Default)]
struct Weighted {
    cumulative: Vec<u32>,
}

impl Weighted {
    fn push(&mut self, weight: u32) {
        let total = self.cumulative.last().copied().unwrap_or(0);
        self.cumulative.push(total + weight);
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let ticket = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= ticket)
    }
}

/// A property added during the run, live until line `until`.
#[derive(Debug)]
struct LateProp {
    name: String,
    kind: Kind,
    until: u64,
}

/// An event as used at run time: the static spec or one introduced during the run.
#[derive(Debug)]
struct Event {
    name: String,
    props: &'static [&'static [Prop]],
    late: Vec<LateProp>,
}

#[derive(Debug)]
struct Session {
    user: usize,
    theme: Theme,
    remaining: u32,
    fresh: bool,
    id: String,
    product: usize,
    cart: Vec<usize>,
    cart_id: String,
    order_id: String,
    checkout_id: String,
    video: usize,
    position: i64,
    page: usize,
    campaign: Option<usize>,
}

/// What a property value may refer to while it is written.
struct Now {
    ms: i64,
    session: usize,
}

pub(super) struct Traffic {
    rng: ChaCha8Rng,
    drift_rate: f64,
    line: u64,
    received_ms: i64,
    users: Vec<User>,
    next_user_serial: usize,
    products: Vec<Product>,
    videos: Vec<Video>,
    companies: Vec<Company>,
    sessions: Vec<Session>,
    events: Vec<Event>,
    /// Per theme (ecommerce, video, saas, lifecycle): event indexes and their weights.
    themes: [(Vec<usize>, Weighted); 4],
    late_properties: u64,
    late_events: usize,
}

fn theme_slot(theme: Theme) -> usize {
    match theme {
        Theme::Ecommerce => 0,
        Theme::Video => 1,
        Theme::Saas => 2,
        Theme::Lifecycle => 3,
    }
}

impl Traffic {
    pub(super) fn new(seed: u64, drift_rate: f64) -> Traffic {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = clock::start_ms(seed);
        let companies = population::companies(&mut rng);
        let products = population::products(&mut rng);
        let videos = population::videos(&mut rng);
        let users = population::users(&mut rng, start, companies.len());
        let mut themes: [(Vec<usize>, Weighted); 4] = Default::default();
        let events = EVENTS
            .iter()
            .enumerate()
            .map(|(n, spec)| {
                let (members, weights) = &mut themes[theme_slot(spec.theme)];
                members.push(n);
                weights.push(spec.weight);
                Event {
                    name: spec.name.to_owned(),
                    props: spec.props,
                    late: Vec::new(),
                }
            })
            .collect();
        let mut traffic = Traffic {
            rng,
            drift_rate,
            line: 0,
            received_ms: start,
            next_user_serial: users.len(),
            users,
            products,
            videos,
            companies,
            sessions: Vec::new(),
            events,
            themes,
            late_properties: 0,
            late_events: 0,
        };
        for slot in 0..WEB_SESSIONS + MOBILE_SESSIONS {
            let session = traffic.new_session(slot >= WEB_SESSIONS);
            traffic.sessions.push(session);
        }
        traffic
    }

    /// The RNG, for malformed-line decisions that must share the stream's determinism.
    pub(super) fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    fn new_session(&mut self, mobile: bool) -> Session {
        let rng = &mut self.rng;
        // Now and then a brand-new visitor replaces an old one.
        let user = if mobile {
            WEB_USERS + index(rng, MOBILE_USERS)
        } else {
            index(rng, WEB_USERS)
        };
        if chance(rng, 5) {
            let platform = self.users[user].platform;
            self.next_user_serial += 1;
            let start = self.received_ms;
            self.users[user] = population::new_user(
                rng,
                self.next_user_serial,
                platform,
                start,
                self.companies.len(),
            );
        }
        let roll = index(rng, 100);
        let theme = match (mobile, roll) {
            (false, 0..55) | (true, 0..45) => Theme::Ecommerce,
            (false, 55..75) | (true, 45..80) => Theme::Video,
            _ => Theme::Saas,
        };
        let products = self.products.len();
        Session {
            user,
            theme,
            remaining: 3 + rng.random_range(0..60u32),
            fresh: true,
            id: hex_id(rng, "", 16),
            product: index(rng, products),
            cart: (0..1 + index(rng, 4))
                .map(|_| index(rng, products))
                .collect(),
            cart_id: hex_id(rng, "", 24),
            order_id: hex_id(rng, "", 24),
            checkout_id: hex_id(rng, "", 24),
            video: index(rng, self.videos.len()),
            position: 0,
            page: index(rng, PAGES.len()),
            campaign: chance(rng, 25).then(|| index(rng, CAMPAIGN_SOURCES.len())),
        }
    }

    /// Appends one well-formed message (no trailing newline). `track_only` forces a
    /// track call (malformed lines are built from one).
    pub(super) fn write_message(&mut self, buf: &mut Vec<u8>, track_only: bool) {
        self.line += 1;
        self.grow();
        self.received_ms += i64::from(self.rng.random_range(0..=MAX_TICK_MS));
        let call = if track_only {
            Call::Track
        } else {
            let ticket = self.rng.random_range(0..1000u32);
            let mut acc = 0;
            CALL_MIX
                .iter()
                .find(|&&(_, weight)| {
                    acc += weight;
                    ticket < acc
                })
                .map_or(Call::Track, |&(call, _)| call)
        };
        let slot = match call {
            Call::Page => index(&mut self.rng, WEB_SESSIONS),
            Call::Screen => WEB_SESSIONS + index(&mut self.rng, MOBILE_SESSIONS),
            _ => index(&mut self.rng, WEB_SESSIONS + MOBILE_SESSIONS),
        };
        self.write_call(buf, call, slot);
        let session = &mut self.sessions[slot];
        session.fresh = false;
        session.remaining = session.remaining.saturating_sub(1);
        if session.remaining == 0 {
            self.sessions[slot] = self.new_session(slot >= WEB_SESSIONS);
        }
    }

    /// Every so often a new property starts appearing on some event, and more rarely a
    /// new event appears; experiments end, so late properties also retire.
    fn grow(&mut self) {
        if self.line.is_multiple_of(NEW_PROPERTY_EVERY) {
            self.late_properties += 1;
            let stem = index(&mut self.rng, LATE_PROPERTY_STEMS.len());
            let kind = match stem {
                0 => Kind::Choice(&["control", "treatment", "treatment_b"]),
                1 => Kind::Bool(50),
                2 => Kind::Int(0, 9),
                3 => Kind::Choice(&["hero", "sidebar", "footer", "inline"]),
                4 => Kind::Choice(&["baseline", "two_tower", "popularity"]),
                _ => Kind::Choice(&["grid", "list", "carousel"]),
            };
            let theme = match index(&mut self.rng, 10) {
                0..5 => Theme::Ecommerce,
                5..8 => Theme::Video,
                _ => Theme::Saas,
            };
            let event = self.pick_event(theme);
            let until = self.line + PROPERTY_LIFETIME;
            let name = format!("{}{}", LATE_PROPERTY_STEMS[stem], self.late_properties);
            let late = &mut self.events[event].late;
            late.retain(|prop| prop.until > self.line);
            late.push(LateProp { name, kind, until });
        }
        if self.line.is_multiple_of(NEW_EVENT_EVERY) {
            let n = self.late_events;
            self.late_events += 1;
            let base = LATE_EVENT_NAMES[n % LATE_EVENT_NAMES.len()];
            let name = match n / LATE_EVENT_NAMES.len() {
                0 => base.to_owned(),
                round => format!("{base} V{}", round + 1),
            };
            let theme = [Theme::Ecommerce, Theme::Video, Theme::Saas][n % 3];
            let (members, weights) = &mut self.themes[theme_slot(theme)];
            members.push(self.events.len());
            weights.push(15);
            self.events.push(Event {
                name,
                props: &[LATE_EVENT_PROPS],
                late: Vec::new(),
            });
        }
    }

    fn pick_event(&mut self, theme: Theme) -> usize {
        let (members, weights) = &self.themes[theme_slot(theme)];
        members[weights.pick(&mut self.rng)]
    }

    fn write_call(&mut self, buf: &mut Vec<u8>, call: Call, slot: usize) {
        let received = self.received_ms;
        let user_index = self.sessions[slot].user;
        let platform = self.users[user_index].platform;
        let mobile = platform.is_mobile();
        let rng = &mut self.rng;
        // Mobile SDKs batch and may hold events while offline; web flushes quickly.
        let latency = i64::from(rng.random_range(20..400u32));
        let queued = if mobile && chance(rng, 5) {
            i64::from(rng.random_range(60_000..3_600_000u32))
        } else {
            i64::from(rng.random_range(5..if mobile { 30_000 } else { 2_000 }))
        };
        let sent = received - latency;
        let happened = sent - queued;
        let skew = self.users[user_index].skew_ms;
        let original = happened + skew;
        let sent_client = sent + skew;
        let timestamp = received - (sent_client - original);

        let track_event = (call == Call::Track).then(|| self.choose_event(slot, mobile));
        let server = call == Call::Track
            && self.sessions[slot].theme == Theme::Saas
            && self.users[user_index].user_id.is_some()
            && chance(&mut self.rng, 15);

        if call == Call::Alias && self.users[user_index].user_id.is_none() {
            // The visitor signs up: from now on their calls carry a userId.
            let user = &mut self.users[user_index];
            user.user_id = Some(user.future_user_id.clone());
        }

        let mut out = JsonOut::new(buf);
        out.begin_object();
        let user = &self.users[user_index];
        if !server || chance(&mut self.rng, 30) {
            out.key("anonymousId").str(&user.anonymous_id);
        }
        out.key("channel")
            .str(if server { "server" } else { "client" });
        out.key("context").begin_object();
        if server {
            out.key("library").begin_object();
            out.key("name").str("analytics-node");
            out.key("version").str("1.3.0");
            out.end_object();
        } else {
            out.raw_members(&user.context);
            if !mobile {
                self.write_page_context(&mut out, slot);
            }
        }
        out.end_object();
        out.key("integrations").begin_object();
        if chance(&mut self.rng, 10) {
            out.key("All").bool(true);
            out.key("Mixpanel").bool(false);
        }
        out.end_object();
        if !chance_per_mille(&mut self.rng, 5) {
            let ids = out.key("messageId").begin_str();
            if mobile {
                push_uuid(ids, &mut self.rng, platform == Platform::Ios);
            } else {
                ids.extend_from_slice(b"ajs-next-");
                push_hex(ids, &mut self.rng, 32);
            }
            out.end_str();
        }
        write_time(&mut out, "originalTimestamp", original);
        write_time(&mut out, "receivedAt", received);
        write_time(&mut out, "sentAt", sent_client);
        write_time(&mut out, "timestamp", timestamp);
        out.key("type").str(call.name());
        if let Some(user_id) = &self.users[user_index].user_id {
            out.key("userId").str(user_id);
        }
        let now = Now {
            ms: timestamp,
            session: slot,
        };
        match call {
            Call::Track => {
                let event = track_event.unwrap_or(0);
                out.key("event").str(&self.events[event].name);
                out.key("properties").begin_object();
                self.write_event_properties(&mut out, event, &now);
                out.end_object();
            }
            Call::Page => self.write_page(&mut out, slot),
            Call::Screen => self.write_screen(&mut out),
            Call::Identify => self.write_identify(&mut out, user_index),
            Call::Group => self.write_group(&mut out, user_index),
            Call::Alias => {
                let user = &self.users[user_index];
                out.key("previousId").str(&user.anonymous_id);
            }
        }
        out.key("version").int(2);
        out.end_object();
    }

    /// The event a session's track call sends: its theme's mix, with lifecycle events
    /// mixed into mobile sessions and `Application Opened` starting them.
    fn choose_event(&mut self, slot: usize, mobile: bool) -> usize {
        let session = &self.sessions[slot];
        if mobile && session.fresh {
            return EVENTS
                .iter()
                .position(|e| e.name == "Application Opened")
                .unwrap_or(0);
        }
        let theme = if mobile && chance(&mut self.rng, 20) {
            Theme::Lifecycle
        } else {
            session.theme
        };
        let rng = &mut self.rng;
        let session = &mut self.sessions[slot];
        if chance(rng, 30) {
            session.product = index(rng, self.products.len());
        }
        if theme == Theme::Video {
            let length = self.videos[session.video].total_length;
            session.position =
                (session.position + i64::from(rng.random_range(0..90u32))).min(length);
        }
        self.pick_event(theme)
    }

    fn write_page_context(&mut self, out: &mut JsonOut<'_>, slot: usize) {
        let session = &self.sessions[slot];
        let (path, title, _) = PAGES[session.page];
        let campaign = session.campaign;
        let referrer = *pick(&mut self.rng, REFERRERS);
        out.key("page").begin_object();
        out.key("path").str(path);
        out.key("referrer").str(referrer);
        out.key("search").str(if campaign.is_some() {
            "?utm_source=newsletter"
        } else {
            ""
        });
        out.key("title").str(title);
        let url = out.key("url").begin_str();
        url.extend_from_slice(b"https://shop.example.com");
        url.extend_from_slice(path.as_bytes());
        out.end_str();
        out.end_object();
        if let Some(campaign) = campaign {
            let (source, medium) = CAMPAIGN_SOURCES[campaign];
            out.key("campaign").begin_object();
            out.key("medium").str(medium);
            out.key("name")
                .str(CAMPAIGN_NAMES[campaign % CAMPAIGN_NAMES.len()]);
            out.key("source").str(source);
            out.end_object();
        }
    }

    fn write_page(&mut self, out: &mut JsonOut<'_>, slot: usize) {
        let page = index(&mut self.rng, PAGES.len());
        self.sessions[slot].page = page;
        let (path, title, category) = PAGES[page];
        out.key("category").str(category);
        out.key("name").str(title);
        out.key("properties").begin_object();
        out.key("category").str(category);
        out.key("name").str(title);
        out.key("path").str(path);
        out.key("referrer").str(pick_str(&mut self.rng, REFERRERS));
        out.key("search").str("");
        out.key("title").str(title);
        let url = out.key("url").begin_str();
        url.extend_from_slice(b"https://shop.example.com");
        url.extend_from_slice(path.as_bytes());
        out.end_str();
        out.end_object();
    }

    fn write_screen(&mut self, out: &mut JsonOut<'_>) {
        let &(name, category) = pick(&mut self.rng, SCREENS);
        out.key("name").str(name);
        out.key("properties").begin_object();
        out.key("category").str(category);
        out.key("name").str(name);
        if chance(&mut self.rng, 30) {
            out.key("variation").str(pick_str(
                &mut self.rng,
                &["blue signup button", "red signup button"],
            ));
        }
        out.end_object();
    }

    fn write_identify(&mut self, out: &mut JsonOut<'_>, user_index: usize) {
        let user = &self.users[user_index];
        out.key("traits").begin_object();
        if user.user_id.is_none() {
            // An anonymous visitor who left an e-mail address (newsletter, checkout).
            out.key("email");
            str_value(&mut self.rng, self.drift_rate, out, &user.email);
            out.end_object();
            return;
        }
        let (city, state, postal_code, country, _, _) = CITIES[user.city];
        let company = &self.companies[user.company];
        if chance(&mut self.rng, 70) {
            out.key("address").begin_object();
            out.key("city").str(city);
            out.key("country").str(country);
            out.key("postalCode").str(postal_code);
            out.key("state").str(state);
            out.key("street").str("6th St");
            out.end_object();
        }
        out.key("company").begin_object();
        out.key("employee_count").int(company.employees);
        out.key("id").str(&company.id);
        out.key("industry").str(company.industry);
        out.key("name").str(company.name);
        out.end_object();
        let created = out.key("createdAt").begin_str();
        clock::write_iso(created, user.created_at_ms);
        out.end_str();
        out.key("email");
        str_value(&mut self.rng, self.drift_rate, out, &user.email);
        out.key("firstName");
        str_value(&mut self.rng, self.drift_rate, out, user.first_name);
        out.key("lastName");
        str_value(&mut self.rng, self.drift_rate, out, user.last_name);
        let name = out.key("name").begin_str();
        name.extend_from_slice(user.first_name.as_bytes());
        name.push(b' ');
        name.extend_from_slice(user.last_name.as_bytes());
        out.end_str();
        out.key("plan");
        str_value(&mut self.rng, self.drift_rate, out, user.plan);
        if chance(&mut self.rng, 40) {
            out.key("logins");
            let logins = i64::from(self.rng.random_range(1..400u32));
            if !drift(&mut self.rng, self.drift_rate, out, Shape::Int) {
                out.int(logins);
            }
        }
        if chance(&mut self.rng, 20) {
            out.key("avatar")
                .str("https://cdn.example.com/avatars/default.png");
        }
        out.end_object();
    }

    fn write_group(&mut self, out: &mut JsonOut<'_>, user_index: usize) {
        let company = &self.companies[self.users[user_index].company];
        out.key("groupId").str(&company.id);
        out.key("traits").begin_object();
        out.key("employees");
        if !drift(&mut self.rng, self.drift_rate, out, Shape::Int) {
            out.int(company.employees);
        }
        out.key("industry");
        str_value(&mut self.rng, self.drift_rate, out, company.industry);
        out.key("name");
        str_value(&mut self.rng, self.drift_rate, out, company.name);
        out.key("plan");
        str_value(&mut self.rng, self.drift_rate, out, company.plan);
        let website = out.key("website").begin_str();
        website.extend_from_slice(b"https://");
        website.extend(
            company
                .name
                .bytes()
                .filter(u8::is_ascii_alphanumeric)
                .map(|b| b.to_ascii_lowercase()),
        );
        website.extend_from_slice(b".com");
        out.end_str();
        out.end_object();
    }

    fn write_event_properties(&mut self, out: &mut JsonOut<'_>, event: usize, now: &Now) {
        let props = self.events[event].props;
        for prop in props.iter().flat_map(|group| group.iter()) {
            if prop.percent < 100 && !chance(&mut self.rng, u32::from(prop.percent)) {
                continue;
            }
            out.key(prop.name);
            if !drift(&mut self.rng, self.drift_rate, out, prop.kind.shape()) {
                self.write_value(out, prop.kind, now);
            }
        }
        for late in 0..self.events[event].late.len() {
            let (kind, live) = {
                let prop = &self.events[event].late[late];
                (prop.kind, prop.until > self.line)
            };
            if !live || !chance(&mut self.rng, 60) {
                continue;
            }
            out.key(&self.events[event].late[late].name);
            if !drift(&mut self.rng, self.drift_rate, out, kind.shape()) {
                self.write_value(out, kind, now);
            }
        }
    }

    fn write_value(&mut self, out: &mut JsonOut<'_>, kind: Kind, now: &Now) {
        let rng = &mut self.rng;
        let session = &self.sessions[now.session];
        let product = &self.products[session.product];
        let video = &self.videos[session.video];
        let user = &self.users[session.user];
        match kind {
            Kind::Choice(options) => {
                out.str(pick_str(rng, options));
            }
            Kind::Int(low, high) => {
                out.int(rng.random_range(low..=high));
            }
            Kind::Money(low, high) => {
                out.float(round2(rng.random_range(low..=high)), 2);
            }
            Kind::Float(low, high) => {
                out.float(rng.random_range(low..=high), 3);
            }
            Kind::Bool(percent) => {
                out.bool(chance(rng, u32::from(percent)));
            }
            Kind::Now => {
                clock::write_iso(out.begin_str(), now.ms);
                out.end_str();
            }
            Kind::DateAhead(days) => {
                clock::write_date(out.begin_str(), now.ms + days * 86_400_000);
                out.end_str();
            }
            Kind::Currency => {
                out.str(pick_str(rng, CURRENCIES));
            }
            Kind::Hex(prefix, digits) => {
                let id = out.begin_str();
                id.extend_from_slice(prefix.as_bytes());
                push_hex(id, rng, usize::from(digits));
                out.end_str();
            }
            Kind::Uuid => {
                push_uuid(out.begin_str(), rng, false);
                out.end_str();
            }
            Kind::SessionId => {
                out.str(&session.id);
            }
            Kind::ProductId => {
                out.str(&product.id);
            }
            Kind::Sku => {
                out.str(&product.sku);
            }
            Kind::ProductName => {
                out.str(&product.name);
            }
            Kind::Category => {
                out.str(product.category);
            }
            Kind::Brand => {
                out.str(product.brand);
            }
            Kind::Variant => {
                out.str(product.variant);
            }
            Kind::Price => {
                out.float(product.price, 2);
            }
            Kind::Quantity => {
                out.int(i64::from(rng.random_range(1..=3u32)));
            }
            Kind::ProductUrl => {
                write_product_url(out, product, false);
            }
            Kind::ImageUrl => {
                write_product_url(out, product, true);
            }
            Kind::Products => {
                out.begin_array();
                for &item in &session.cart {
                    let product = &self.products[item];
                    out.begin_object();
                    out.key("product_id").str(&product.id);
                    out.key("sku").str(&product.sku);
                    out.key("name").str(&product.name);
                    out.key("category").str(product.category);
                    out.key("brand").str(product.brand);
                    out.key("price").float(product.price, 2);
                    out.key("quantity")
                        .int(i64::from(rng.random_range(1..=3u32)));
                    out.key("position")
                        .int(i64::from(rng.random_range(1..=12u32)));
                    out.key("url");
                    write_product_url(out, product, false);
                    out.key("image_url");
                    write_product_url(out, product, true);
                    out.end_object();
                }
                out.end_array();
            }
            Kind::OrderId => {
                out.str(&session.order_id);
            }
            Kind::CheckoutId => {
                out.str(&session.checkout_id);
            }
            Kind::CartId => {
                out.str(&session.cart_id);
            }
            Kind::Query => {
                out.str(pick_str(rng, QUERIES));
            }
            Kind::Filters | Kind::Sorts => {
                let (names, values): (&[&str], &[&str]) = if kind == Kind::Filters {
                    (
                        &["department", "price", "color", "size"],
                        &["beauty", "under-$25", "blue", "M"],
                    )
                } else {
                    (&["price", "rating", "newest"], &["desc", "asc"])
                };
                out.begin_array();
                for _ in 0..1 + index(rng, 2) {
                    out.begin_object();
                    out.key("type").str(pick_str(rng, names));
                    out.key("value").str(pick_str(rng, values));
                    out.end_object();
                }
                out.end_array();
            }
            Kind::Step => {
                out.int(i64::from(rng.random_range(1..=4u32)));
            }
            Kind::PageUrl => {
                let url = out.begin_str();
                url.extend_from_slice(b"https://shop.example.com");
                url.extend_from_slice(pick(rng, PAGES).0.as_bytes());
                out.end_str();
            }
            Kind::Email => {
                out.str(&user.email);
            }
            Kind::FirstName => {
                out.str(user.first_name);
            }
            Kind::LastName => {
                out.str(user.last_name);
            }
            Kind::Username => {
                let name = out.begin_str();
                name.extend(user.email.bytes().take_while(|&b| b != b'@'));
                out.end_str();
            }
            Kind::AccountName => {
                out.str(self.companies[user.company].name);
            }
            Kind::AssetId => {
                out.str(&video.asset_id);
            }
            Kind::AssetIds => {
                out.begin_array();
                out.str(&video.asset_id);
                out.str(&self.videos[(session.video + 1) % self.videos.len()].asset_id);
                out.end_array();
            }
            Kind::PodId => {
                out.str(&video.pod_id);
            }
            Kind::PodIds => {
                out.begin_array();
                out.str(&video.pod_id);
                out.end_array();
            }
            Kind::VideoTitle => {
                out.str(&video.title);
            }
            Kind::Program => {
                out.str(video.program);
            }
            Kind::Position => {
                out.int(session.position);
            }
            Kind::TotalLength => {
                out.int(video.total_length);
            }
            Kind::AppVersion => {
                out.str(APP_RELEASES[user.release].0);
            }
            Kind::AppBuild => {
                out.str(APP_RELEASES[user.release].1);
            }
            Kind::PreviousVersion => {
                out.str(APP_RELEASES[user.release.saturating_sub(1)].0);
            }
            Kind::PreviousBuild => {
                out.str(APP_RELEASES[user.release.saturating_sub(1)].1);
            }
            Kind::Campaign => {
                let &(source, medium) = pick(rng, CAMPAIGN_SOURCES);
                out.begin_object();
                out.key("content").str(pick_str(
                    rng,
                    &["Your cart misses you", "20% off today", "New episode out"],
                ));
                out.key("medium")
                    .str(if medium == "email" { "Push" } else { medium });
                out.key("name").str(pick_str(rng, CAMPAIGN_NAMES));
                out.key("source").str(source);
                out.end_object();
            }
            Kind::Keywords => {
                out.begin_array();
                for _ in 0..1 + index(rng, 3) {
                    out.str(pick_str(
                        rng,
                        &["sports", "highlights", "recap", "kids", "live"],
                    ));
                }
                out.end_array();
            }
            Kind::AdContent => {
                out.begin_object();
                out.key("asset_id").str(&video.asset_id);
                out.key("pod_id").str(&video.pod_id);
                out.key("program").str(video.program);
                out.key("title").str(&video.title);
                out.key("total_length").int(video.total_length);
                out.end_object();
            }
        }
    }
}

fn chance_per_mille(rng: &mut ChaCha8Rng, per_mille: u32) -> bool {
    rng.random_range(0..1000u32) < per_mille
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn write_time(out: &mut JsonOut<'_>, key: &str, ms: i64) {
    clock::write_iso(out.key(key).begin_str(), ms);
    out.end_str();
}

fn write_product_url(out: &mut JsonOut<'_>, product: &Product, image: bool) {
    let url = out.begin_str();
    url.extend_from_slice(if image {
        b"https://cdn.shop.example.com/img/"
    } else {
        b"https://shop.example.com/products/"
    });
    url.extend_from_slice(product.slug.as_bytes());
    if image {
        url.extend_from_slice(b".jpg");
    }
    out.end_str();
}

/// With probability `drift_rate`, writes a value of a different JSON type than
/// `usual` (the mistakes real instrumentation makes) and returns `true`.
fn drift(rng: &mut ChaCha8Rng, rate: f64, out: &mut JsonOut<'_>, usual: Shape) -> bool {
    if rate <= 0.0 || rng.random::<f64>() >= rate {
        return false;
    }
    let variant = index(rng, 3);
    let number = i64::from(rng.random_range(1..500u32));
    match (usual, variant) {
        (Shape::Int, 0) => out.str(&number.to_string()),
        (Shape::Int, 1) => out.str(&format!("{number} items")),
        (Shape::Float, 0) => out.str(&format!("USD {}.{:02}", number, number % 100)),
        (Shape::Float, 1) => out.str(&format!("{number}.5")),
        (Shape::Int | Shape::Float, _) => {
            out.begin_object();
            out.key("value").int(number);
            out.end_object()
        }
        (Shape::Bool, 0) => out.str(pick_str(rng, &["yes", "no", "true", "Y"])),
        (Shape::Bool, _) => out.int(number % 2),
        (Shape::Str, 0) => out.int(number),
        (Shape::Str, 1) => out.float(number as f64 / 4.0, 2),
        (Shape::Str, _) => {
            out.begin_object();
            out.key("value").str(pick_str(rng, &["unknown", "n/a", ""]));
            out.end_object()
        }
        (Shape::Array, 0) | (Shape::Object, 0) => out.str("[object Object]"),
        (Shape::Array, _) => {
            out.begin_object();
            out.key("0").int(number);
            out.end_object()
        }
        (Shape::Object, _) => {
            out.begin_array();
            out.int(number);
            out.end_array()
        }
    };
    true
}

/// A string trait or property that may drift.
fn str_value(rng: &mut ChaCha8Rng, rate: f64, out: &mut JsonOut<'_>, value: &str) {
    if !drift(rng, rate, out, Shape::Str) {
        out.str(value);
    }
}
