//! Writes the seed corpus (`tessera_fuzz::seeds`) under the directory given, one folder per
//! target: `seed_corpus fuzz/corpus`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let seeds = tessera_fuzz::seeds::all();
    for (n, (target, input)) in seeds.iter().enumerate() {
        let folder = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(format!("seed-{n:03}")), input)?;
    }
    println!("{} seeds written under {dir}", seeds.len());
    Ok(())
}
