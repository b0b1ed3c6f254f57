//! Runs one operator command and prints what a person needs.

use std::path::PathBuf;

use super::args::Operator;
use super::{follow_with_bar, print_job, print_list_line, read_storyboard};

/// The commands people run against the jobs API.
pub async fn run(command: Operator) -> anyhow::Result<()> {
    match command {
        Operator::Submit { file, follow, api } => {
            let client = api.client()?;
            let job = client.submit(read_storyboard(&file)?).await?;
            if follow {
                eprintln!("submitted {}", job.id);
                finish(follow_with_bar(&client, &job.id).await?)
            } else {
                print_job(&job);
                Ok(())
            }
        }
        Operator::Status { id, follow, api } => {
            let client = api.client()?;
            if follow {
                finish(follow_with_bar(&client, &id).await?)
            } else {
                print_job(&client.status(&id).await?);
                Ok(())
            }
        }
        Operator::Cancel { id, api } => {
            let answer = api.client()?.cancel(&id).await?;
            println!("{}", answer.outcome);
            print_job(&answer.job);
            Ok(())
        }
        Operator::List {
            status,
            limit,
            cursor,
            all,
            api,
        } => {
            let client = api.client()?;
            if all {
                client
                    .list_all(status.as_deref(), limit, cursor.as_deref(), |jobs| {
                        jobs.iter().for_each(print_list_line);
                    })
                    .await?;
            } else {
                let page = client
                    .page(status.as_deref(), limit, cursor.as_deref())
                    .await?;
                page.jobs.iter().for_each(print_list_line);
                if let Some(next) = page.next_cursor {
                    eprintln!("more: --cursor {next} (or --all)");
                }
            }
            Ok(())
        }
        Operator::Download {
            id,
            output,
            captions,
            api,
        } => {
            let client = api.client()?;
            let ext = if captions { "vtt" } else { "mp4" };
            let output = output.unwrap_or_else(|| PathBuf::from(format!("{id}.{ext}")));
            let bytes = if captions {
                client.download_captions(&id, &output).await?
            } else {
                client.download(&id, &output).await?
            };
            eprintln!("{} ({bytes} bytes)", output.display());
            Ok(())
        }
    }
}

/// Prints the final state; a job that did not succeed is a non-zero exit.
fn finish(job: jobs_api::JobView) -> anyhow::Result<()> {
    print_job(&job);
    if job.status == "succeeded" {
        Ok(())
    } else {
        anyhow::bail!("the job ended {}", job.status)
    }
}
