//! Who sends the traffic: users with their devices and pre-rendered `context`, the
//! product catalogue, the video library and the companies users belong to. All of it
//! is drawn once from the generator's RNG, so it is as deterministic as the stream.

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::catalog::{
    ADJECTIVES, BRANDS, CATEGORIES, COMPANIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, NOUNS,
    PLANS, PROGRAMS, VARIANTS,
};
use super::json_out::JsonOut;

/// Users per platform. Sessions pick users from these pools.
pub(super) const WEB_USERS: usize = 1200;
pub(super) const MOBILE_USERS: usize = 800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Platform {
    Web,
    Ios,
    Android,
}

impl Platform {
    pub(super) fn is_mobile(self) -> bool {
        self != Platform::Web
    }
}

/// App releases a mobile user may run: (version, build).
pub(super) const APP_RELEASES: &[(&str, &str)] = &[
    ("5.9.3", "2988"),
    ("5.10.0", "3012"),
    ("5.11.2", "3027"),
    ("5.12.1", "3041"),
];

#[derive(Debug)]
pub(super) struct User {
    pub(super) anonymous_id: String,
    /// Set once the user is identified (about 60% from the start, more after aliases).
    pub(super) user_id: Option<String>,
    /// The id this user gets when they sign up (used by alias).
    pub(super) future_user_id: String,
    pub(super) platform: Platform,
    pub(super) first_name: &'static str,
    pub(super) last_name: &'static str,
    pub(super) email: String,
    pub(super) company: usize,
    pub(super) plan: &'static str,
    pub(super) created_at_ms: i64,
    /// How far the device clock is off, in milliseconds.
    pub(super) skew_ms: i64,
    /// Index into [`APP_RELEASES`] (mobile only).
    pub(super) release: usize,
    pub(super) city: usize,
    /// The `context` members that do not change between this user's messages,
    /// serialised once (`"ip":"…","library":{…},…`).
    pub(super) context: String,
}

#[derive(Debug)]
pub(super) struct Product {
    pub(super) id: String,
    pub(super) sku: String,
    pub(super) name: String,
    pub(super) category: &'static str,
    pub(super) brand: &'static str,
    pub(super) variant: &'static str,
    pub(super) price: f64,
    pub(super) slug: String,
}

#[derive(Debug)]
pub(super) struct Video {
    pub(super) asset_id: String,
    pub(super) pod_id: String,
    pub(super) title: String,
    pub(super) program: &'static str,
    pub(super) total_length: i64,
}

#[derive(Debug)]
pub(super) struct Company {
    pub(super) id: String,
    pub(super) name: &'static str,
    pub(super) industry: &'static str,
    pub(super) employees: i64,
    pub(super) plan: &'static str,
}

/// (city, state, postal code, country, timezone, locale)
pub(super) const CITIES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "San Francisco",
        "CA",
        "94107",
        "US",
        "America/Los_Angeles",
        "en-US",
    ),
    ("New York", "NY", "10013", "US", "America/New_York", "en-US"),
    ("Chicago", "IL", "60607", "US", "America/Chicago", "en-US"),
    ("Austin", "TX", "78701", "US", "America/Chicago", "en-US"),
    ("Toronto", "ON", "M5V 2T6", "CA", "America/Toronto", "en-CA"),
    ("London", "", "EC1V 9HX", "GB", "Europe/London", "en-GB"),
    ("Berlin", "", "10115", "DE", "Europe/Berlin", "de-DE"),
    ("Paris", "", "75011", "FR", "Europe/Paris", "fr-FR"),
    (
        "São Paulo",
        "SP",
        "01310-100",
        "BR",
        "America/Sao_Paulo",
        "pt-BR",
    ),
    ("Tokyo", "", "150-0001", "JP", "Asia/Tokyo", "ja-JP"),
    ("Bengaluru", "KA", "560001", "IN", "Asia/Kolkata", "en-IN"),
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 Edg/121.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
];

/// (manufacturer, model, os version, width, height, density)
const IOS_DEVICES: &[(&str, &str, &str, i64, i64, f64)] = &[
    ("Apple", "iPhone14,5", "17.2.1", 390, 844, 3.0),
    ("Apple", "iPhone15,2", "17.3", 393, 852, 3.0),
    ("Apple", "iPhone12,1", "16.7.4", 414, 896, 2.0),
    ("Apple", "iPad13,1", "17.1", 820, 1180, 2.0),
];

const ANDROID_DEVICES: &[(&str, &str, &str, i64, i64, f64)] = &[
    ("samsung", "SM-S911B", "14", 1080, 2340, 2.625),
    ("Google", "Pixel 8", "14", 1080, 2400, 2.625),
    ("Google", "Pixel 6a", "13", 1080, 2400, 2.625),
    ("Xiaomi", "Redmi Note 12", "13", 1080, 2400, 2.75),
    ("OnePlus", "CPH2449", "13", 1240, 2772, 3.5),
];

const CARRIERS: &[&str] = &[
    "T-Mobile",
    "Verizon",
    "AT&T",
    "Vodafone",
    "Orange",
    "NTT DOCOMO",
];

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[index(rng, items.len())]
}

/// A uniformly chosen string.
pub(super) fn pick_str<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[index(rng, items.len())]
}

/// A uniform index below `len` (drawn as `u32`, so identical on every platform).
pub(super) fn index(rng: &mut ChaCha8Rng, len: usize) -> usize {
    rng.random_range(0..len as u32) as usize
}

/// `true` with the given percentage.
pub(super) fn chance(rng: &mut ChaCha8Rng, percent: u32) -> bool {
    rng.random_range(0..100u32) < percent
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `digits` random hex digits.
pub(super) fn push_hex(buf: &mut Vec<u8>, rng: &mut ChaCha8Rng, digits: usize) {
    let mut left = digits;
    while left > 0 {
        let mut bits = rng.next_u64();
        for _ in 0..left.min(16) {
            buf.push(HEX[(bits & 15) as usize]);
            bits >>= 4;
        }
        left = left.saturating_sub(16);
    }
}

/// Appends a random UUID-shaped id (version 4 layout), upper case on iOS as Apple's
/// `NSUUID` prints it.
pub(super) fn push_uuid(buf: &mut Vec<u8>, rng: &mut ChaCha8Rng, upper: bool) {
    let table = if upper { HEX_UPPER } else { HEX };
    let (mut high, mut low) = (rng.next_u64(), rng.next_u64());
    for position in 0..32 {
        if matches!(position, 8 | 12 | 16 | 20) {
            buf.push(b'-');
        }
        let nibble = if position == 12 {
            4
        } else if position < 16 {
            let n = high & 15;
            high >>= 4;
            n
        } else {
            let n = low & 15;
            low >>= 4;
            if position == 16 { 8 | (n & 3) } else { n }
        };
        buf.push(table[nibble as usize]);
    }
}

pub(super) fn uuid(rng: &mut ChaCha8Rng, upper: bool) -> String {
    let mut buf = Vec::with_capacity(36);
    push_uuid(&mut buf, rng, upper);
    String::from_utf8(buf).unwrap_or_default()
}

pub(super) fn hex_id(rng: &mut ChaCha8Rng, prefix: &str, digits: usize) -> String {
    let mut buf = Vec::with_capacity(prefix.len() + digits);
    buf.extend_from_slice(prefix.as_bytes());
    push_hex(&mut buf, rng, digits);
    String::from_utf8(buf).unwrap_or_default()
}

pub(super) fn companies(rng: &mut ChaCha8Rng) -> Vec<Company> {
    COMPANIES
        .iter()
        .map(|&(name, industry)| Company {
            id: hex_id(rng, "grp_", 12),
            name,
            industry,
            employees: [12, 48, 150, 800, 4200][index(rng, 5)],
            plan: pick_str(rng, PLANS),
        })
        .collect()
}

pub(super) fn products(rng: &mut ChaCha8Rng) -> Vec<Product> {
    (0..80)
        .map(|n| {
            let name = format!("{} {}", pick(rng, ADJECTIVES), pick(rng, NOUNS));
            let slug = name.to_lowercase().replace(' ', "-");
            Product {
                id: hex_id(rng, "", 24),
                sku: format!("{}-{}", (b'A' + (n % 26) as u8) as char, 100 + n),
                name,
                category: pick_str(rng, CATEGORIES),
                brand: pick_str(rng, BRANDS),
                variant: pick_str(rng, VARIANTS),
                price: f64::from(rng.random_range(499..24_999u32)) / 100.0,
                slug,
            }
        })
        .collect()
}

pub(super) fn videos(rng: &mut ChaCha8Rng) -> Vec<Video> {
    (0..30)
        .map(|n| {
            let program = pick_str(rng, PROGRAMS);
            Video {
                asset_id: hex_id(rng, "", 8),
                pod_id: hex_id(rng, "pod_", 6),
                title: format!("{program}: part {}", n + 1),
                program,
                total_length: i64::from(rng.random_range(90..5400u32)),
            }
        })
        .collect()
}

/// Web users first (`0..WEB_USERS`), then mobile users.
pub(super) fn users(rng: &mut ChaCha8Rng, start_ms: i64, companies: usize) -> Vec<User> {
    (0..WEB_USERS + MOBILE_USERS)
        .map(|n| {
            let platform = if n < WEB_USERS {
                Platform::Web
            } else if chance(rng, 55) {
                Platform::Ios
            } else {
                Platform::Android
            };
            new_user(rng, n, platform, start_ms, companies)
        })
        .collect()
}

/// A user, identified with a 60% chance. `serial` makes ids readable and unique.
pub(super) fn new_user(
    rng: &mut ChaCha8Rng,
    serial: usize,
    platform: Platform,
    start_ms: i64,
    companies: usize,
) -> User {
    let first_name = *pick(rng, FIRST_NAMES);
    let last_name = *pick(rng, LAST_NAMES);
    let email = format!(
        "{}.{}{}@{}",
        ascii_lower(first_name),
        ascii_lower(last_name),
        serial % 97,
        pick(rng, EMAIL_DOMAINS)
    );
    let future_user_id = format!("{}", 100_000 + serial * 7 + index(rng, 7));
    let user_id = chance(rng, 60).then(|| future_user_id.clone());
    let city = index(rng, CITIES.len());
    let release = index(rng, APP_RELEASES.len());
    let context = context_members(rng, platform, city, release);
    User {
        anonymous_id: uuid(rng, platform == Platform::Ios),
        user_id,
        future_user_id,
        platform,
        first_name,
        last_name,
        email,
        company: index(rng, companies),
        plan: pick_str(rng, PLANS),
        created_at_ms: start_ms - i64::from(rng.random_range(0..700u32)) * 86_400_000,
        skew_ms: if chance(rng, 80) {
            i64::from(rng.random_range(0..400u32)) - 200
        } else {
            // A device whose clock is minutes off: exercises Segment's timestamp fix.
            i64::from(rng.random_range(0..600_000u32)) - 300_000
        },
        release,
        city,
        context,
    }
}

/// Lower-cased, with non-ASCII letters dropped (for e-mail addresses).
fn ascii_lower(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn ip(rng: &mut ChaCha8Rng) -> String {
    let n = rng.next_u32();
    format!(
        "{}.{}.{}.{}",
        [73, 98, 24, 81, 151, 177, 203][(n % 7) as usize],
        (n >> 8) & 255,
        (n >> 16) & 255,
        1 + (n >> 24) % 254
    )
}

/// The static part of a user's `context`, as object members.
fn context_members(
    rng: &mut ChaCha8Rng,
    platform: Platform,
    city: usize,
    release: usize,
) -> String {
    let (_, _, _, _, timezone, locale) = CITIES[city];
    let mut buf = Vec::with_capacity(700);
    let mut out = JsonOut::new(&mut buf);
    match platform {
        Platform::Web => {
            out.key("ip").str(&ip(rng));
            out.key("library").begin_object();
            out.key("name").str("analytics.js");
            out.key("version")
                .str(pick_str(rng, &["next-1.53.0", "next-1.61.0", "4.1.0"]));
            out.end_object();
            out.key("locale").str(locale);
            out.key("timezone").str(timezone);
            out.key("userAgent").str(pick_str(rng, USER_AGENTS));
        }
        Platform::Ios | Platform::Android => {
            let ios = platform == Platform::Ios;
            let (version, build) = APP_RELEASES[release];
            let devices = if ios { IOS_DEVICES } else { ANDROID_DEVICES };
            let &(manufacturer, model, os_version, width, height, density) = pick(rng, devices);
            out.key("app").begin_object();
            out.key("build").str(build);
            out.key("name").str("Shoply");
            out.key("namespace").str(if ios {
                "com.shoply.ios"
            } else {
                "com.shoply.android"
            });
            out.key("version").str(version);
            out.end_object();
            let tracking = chance(rng, 35);
            out.key("device").begin_object();
            out.key("adTrackingEnabled").bool(tracking);
            if tracking {
                out.key("advertisingId").str(&uuid(rng, ios));
            }
            out.key("id").str(&uuid(rng, ios));
            out.key("manufacturer").str(manufacturer);
            out.key("model").str(model);
            out.key("name").str(if ios { "iPhone" } else { model });
            out.key("type").str(if ios { "ios" } else { "android" });
            out.end_object();
            out.key("ip").str(&ip(rng));
            out.key("library").begin_object();
            out.key("name").str(if ios {
                "analytics-ios"
            } else {
                "analytics-android"
            });
            out.key("version").str(if ios { "4.1.8" } else { "4.11.3" });
            out.end_object();
            out.key("locale").str(locale);
            let wifi = chance(rng, 60);
            out.key("network").begin_object();
            out.key("bluetooth").bool(false);
            out.key("carrier").str(pick_str(rng, CARRIERS));
            out.key("cellular").bool(!wifi);
            out.key("wifi").bool(wifi);
            out.end_object();
            out.key("os").begin_object();
            out.key("name").str(if ios { "iOS" } else { "Android" });
            out.key("version").str(os_version);
            out.end_object();
            out.key("screen").begin_object();
            out.key("density");
            if ios {
                out.int(density as i64);
            } else {
                out.float(density, 3);
            }
            out.key("height").int(height);
            out.key("width").int(width);
            out.end_object();
            out.key("timezone").str(timezone);
        }
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uuids_have_the_v4_layout() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let id = uuid(&mut rng, false);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, uuid(&mut rng, false));
        assert!(
            uuid(&mut rng, true)
                .chars()
                .all(|c| !c.is_ascii_lowercase())
        );
    }

    #[test]
    fn contexts_are_valid_object_members() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for platform in [Platform::Web, Platform::Ios, Platform::Android] {
            let user = new_user(&mut rng, 1, platform, 0, 3);
            let text = format!("{{{}}}", user.context);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(value["library"]["name"].is_string());
            assert_eq!(value.get("device").is_some(), platform.is_mobile());
        }
    }
}
