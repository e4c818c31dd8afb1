//! Settings → Members: owners add and remove members; admins read the list; users and
//! read-only members get the 403 page.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_core::record::Role;

use super::pages::{html, render_forbidden, Moment, Nav};
use super::ConsoleUser;
use crate::app::AppState;

pub struct MemberRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub role_label: &'static str,
    pub added: Moment,
    pub is_you: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    nav: Nav,
    members: Vec<MemberRow>,
    can_manage: bool,
}

const fn role_label(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owner",
        Role::Admin => "Admin",
        Role::User => "User",
        Role::ReadOnly => "Read-only",
    }
}

pub async fn list(State(state): State<AppState>, user: ConsoleUser) -> Response {
    if !user.member.role.manages_keys() {
        return render_forbidden(&user);
    }
    let now = state.clock.now();
    let members = match state.store.org(&user.org.id).members().await {
        Ok(members) => members,
        Err(error) => return crate::problem::ApiError::from(error).into_response(),
    };
    let page = MembersPage {
        nav: Nav::new(&user, "members"),
        can_manage: user.member.role == Role::Owner,
        members: members
            .into_iter()
            .map(|member| MemberRow {
                is_you: member.id == user.member.id,
                id: member.id.to_string(),
                email: member.email,
                role: member.role.as_str(),
                role_label: role_label(member.role),
                added: Moment::new(now, member.created_at),
            })
            .collect(),
    };
    html(StatusCode::OK, page.render())
}
